// Offline verification finds a corrupted byte in stored events, payloads,
// tree nodes and heads, a missing event, and damage below RocksDB's own
// checksums, and names the first bad seq.
#include "storage/verify.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>

#include "storage/local_ledger.h"
#include "storage/schema.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

namespace schema = storage::schema;

constexpr uint64_t kEvents = 13;

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signer_ = TestSigner();
    verifier_ = VerifierFor(*signer_);
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.hub_name = "careloop.test";
    o.signer = signer_.get();
    auto ledger = storage::LocalLedger::Open(o);
    ASSERT_TRUE(ledger.ok());
    // Rounds of 1, 2 and 3 events, so heads sit at several sizes.
    uint64_t n = 0;
    for (int round = 0; n < kEvents; ++round) {
      v1::AppendRequest r;
      for (int k = 0; k <= round % 3 && n < kEvents; ++k, ++n) {
        *r.add_events() =
            Event("referral/v" + std::to_string(n % 3), "E", "payload " + std::to_string(n))
                .events(0);
      }
      auto c = (*ledger)->Append(r);
      ASSERT_TRUE(c.ok());
      head_sizes_.push_back(c->head().tree_size());
    }
    ASSERT_TRUE((*ledger)->Close().ok());
  }

  storage::VerifyReport Verify() {
    auto r = storage::VerifyLedgerDir(dir_.Sub("ledger"), verifier_.get(), nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : storage::VerifyReport{};
  }

  // Opens the raw RocksDB to damage it on purpose.
  void Mutate(
      const std::function<void(rocksdb::DB*, std::vector<rocksdb::ColumnFamilyHandle*>&)>& fn,
      bool flush = false) {
    rocksdb::Options opts;
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : schema::CfNames()) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(opts, dir_.Sub("ledger"), descs, &h, &db).ok());
    fn(db, h);
    if (flush) {
      ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), h).ok());
    }
    for (auto* c : h) ASSERT_TRUE(db->DestroyColumnFamilyHandle(c).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }

  void FlipByte(int cf, const std::string& key, size_t pos) {
    Mutate([&](rocksdb::DB* db, auto& h) {
      std::string v;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), h[cf], key, &v).ok());
      ASSERT_LT(pos, v.size());
      v[pos] = static_cast<char>(v[pos] ^ 0x20);
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[cf], key, v).ok());
    });
  }

  void Restore(int cf, const std::string& key, size_t pos) { FlipByte(cf, key, pos); }

  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
  std::vector<uint64_t> head_sizes_;
};

TEST_F(VerifyTest, IntactLedgerVerifies) {
  storage::VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.events, kEvents);
  EXPECT_EQ(r.heads, head_sizes_.size() + 1);  // plus the empty head at size 0
  // Without a pinned key the data dir's own is used, and the report says so.
  auto unpinned = storage::VerifyLedgerDir(
      dir_.Sub("ledger"), nullptr,
      [](absl::string_view vkey) -> absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> {
        auto v = trust::Ed25519NoteVerifier::FromVerifierKey(vkey);
        if (!v.ok()) return v.status();
        return std::unique_ptr<storage::NoteVerifier>(std::move(*v));
      });
  ASSERT_TRUE(unpinned.ok());
  EXPECT_TRUE(unpinned->ok);
  EXPECT_TRUE(unpinned->used_stored_key);
  // Another key: the first head fails.
  auto other = VerifierFor(*TestSigner("careloop.test", 3));
  auto wrong = storage::VerifyLedgerDir(dir_.Sub("ledger"), other.get(), nullptr);
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(wrong->ok);
  EXPECT_EQ(wrong->first_bad_seq, 0u);
}

TEST_F(VerifyTest, EveryEventHeaderCorruptionIsFoundAtItsSeq) {
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    FlipByte(schema::kEvents, schema::BE64(seq), 4);
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok) << "seq " << seq;
    EXPECT_EQ(r.first_bad_seq, seq) << r.problem;
    Restore(schema::kEvents, schema::BE64(seq), 4);
  }
  EXPECT_TRUE(Verify().ok);
}

TEST_F(VerifyTest, EveryPayloadCorruptionIsFoundAtItsSeq) {
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    FlipByte(schema::kPayloads, schema::BE64(seq), 2);
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, seq) << r.problem;
    EXPECT_NE(r.problem.find("payload"), std::string::npos);
    Restore(schema::kPayloads, schema::BE64(seq), 2);
  }
}

TEST_F(VerifyTest, TreeNodeCorruptionIsFoundWhereTheNodeIsCompleted) {
  // The leaf of seq 5, the level-1 node over leaves 4..5 (completed at seq 6)
  // and the level-2 node over leaves 4..7 (completed at seq 8).
  for (auto [id, seq] : {std::pair{storage::merkle::NodeId{0, 4}, uint64_t{5}},
                         std::pair{storage::merkle::NodeId{1, 2}, uint64_t{6}},
                         std::pair{storage::merkle::NodeId{2, 1}, uint64_t{8}}}) {
    FlipByte(schema::kMerkle, schema::MerkleKey(id), 7);
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, seq) << r.problem;
    Restore(schema::kMerkle, schema::MerkleKey(id), 7);
  }
}

TEST_F(VerifyTest, EveryHeadCorruptionIsFoundAtItsSize) {
  for (uint64_t size : head_sizes_) {
    std::string v;
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), h[schema::kHeads], schema::BE64(size), &v).ok());
    });
    // A byte inside the signed checkpoint text, near its end (the signature).
    FlipByte(schema::kHeads, schema::BE64(size), v.size() - 5);
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, size) << r.problem;
    Restore(schema::kHeads, schema::BE64(size), v.size() - 5);
  }
}

TEST_F(VerifyTest, MissingEventAndMissingLastHead) {
  Mutate([&](rocksdb::DB* db, auto& h) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), h[schema::kEvents], schema::BE64(6)).ok());
  });
  storage::VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 6u);
  EXPECT_NE(r.problem.find("missing"), std::string::npos);
}

// Whole events moved in a copy of a data dir, at every position: dropped,
// swapped with the next one, or a copy inserted after the last.
TEST_F(VerifyTest, EveryDroppedReorderedOrInsertedEventIsFoundAtItsSeq) {
  auto get = [&](uint64_t seq) {
    std::string v;
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), h[schema::kEvents], schema::BE64(seq), &v).ok());
    });
    return v;
  };
  auto put = [&](uint64_t seq, const std::string& v) {
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[schema::kEvents], schema::BE64(seq), v).ok());
    });
  };
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    const std::string original = get(seq);
    // Dropped.
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), h[schema::kEvents], schema::BE64(seq)).ok());
    });
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok) << "dropped " << seq;
    EXPECT_EQ(r.first_bad_seq, seq) << "dropped: " << r.problem;
    put(seq, original);
    // Reordered with the next one.
    if (seq < kEvents) {
      const std::string next = get(seq + 1);
      put(seq, next);
      put(seq + 1, original);
      r = Verify();
      EXPECT_FALSE(r.ok) << "swapped " << seq;
      EXPECT_EQ(r.first_bad_seq, seq) << "swapped: " << r.problem;
      put(seq, original);
      put(seq + 1, next);
    }
  }
  // Inserted: a copy of an event after the last one.
  put(kEvents + 1, get(3));
  storage::VerifyReport r = Verify();
  EXPECT_FALSE(r.ok) << "an event past the signed log";
  EXPECT_EQ(r.first_bad_seq, kEvents + 1) << r.problem;
  Mutate([&](rocksdb::DB* db, auto& h) {
    ASSERT_TRUE(
        db->Delete(rocksdb::WriteOptions(), h[schema::kEvents], schema::BE64(kEvents + 1)).ok());
  });
  EXPECT_TRUE(Verify().ok);
}

TEST_F(VerifyTest, DamagedSstFileIsReported) {
  Mutate([](rocksdb::DB*, auto&) {}, /*flush=*/true);
  // Damage the middle of every table file: RocksDB's block checksums catch it
  // and verify reports it instead of passing or crashing.
  int damaged = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.Sub("ledger"))) {
    if (e.path().extension() != ".sst") continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    auto size = static_cast<std::streamoff>(f.tellg());
    if (size < 200) continue;
    f.seekp(size / 4);
    f.put('\x5a');
    f.put('\xa5');
    ++damaged;
  }
  ASSERT_GT(damaged, 0);
  auto r = storage::VerifyLedgerDir(dir_.Sub("ledger"), verifier_.get(), nullptr);
  EXPECT_TRUE(!r.ok() || !r->ok) << "damage below the ledger must not verify";
}

}  // namespace
}  // namespace careloop::testing
