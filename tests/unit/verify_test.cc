// Offline verification finds a corrupted byte in stored events, payloads,
// tree nodes and heads, a missing event, and damage below RocksDB's own
// checksums, and names the first bad seq; the ledger's background scrub
// finds the same on a live ledger and fails it stop.
#include "storage/verify.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "storage/high_water.h"
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
    auto ledger = storage::LocalLedger::Open(Options());
    ASSERT_TRUE(ledger.ok());
    // Rounds of 1, 2 and 3 events, so heads sit at several sizes; every
    // event names one or two agencies, every other one a subject; every
    // round has an idempotency key, and one moves a cursor.
    uint64_t n = 0;
    for (int round = 0; n < kEvents; ++round) {
      v1::AppendRequest r;
      for (int k = 0; k <= round % 3 && n < kEvents; ++k, ++n) {
        v1::EventInput* e = r.add_events();
        *e = Event("referral/v" + std::to_string(n % 3), "E", "payload " + std::to_string(n))
                 .events(0);
        e->add_agencies("org.a");
        if (n % 2 == 1) e->add_agencies("org.b");
        if (n % 2 == 0) e->set_subject("subject-" + std::to_string(n % 4));
      }
      r.set_idempotency_key("round-" + std::to_string(round));
      if (round == 2) {
        v1::CursorUpdate* cu = r.add_cursor_updates();
        cu->set_name("consumer/org.a/main");
        cu->set_position(n);
      }
      auto c = (*ledger)->Append(r);
      ASSERT_TRUE(c.ok());
      head_sizes_.push_back(c->head().tree_size());
    }
    ASSERT_TRUE((*ledger)->Close().ok());
  }

  // The fixture's ledger, with no scrub and no verifier key.
  storage::LedgerOptions Options() const {
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.hub_name = "careloop.test";
    o.signer = signer_.get();
    return o;
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

  std::string Get(int cf, const std::string& key) {
    std::string v;
    Mutate([&](rocksdb::DB* db, auto& h) {
      EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), h[cf], key, &v).ok());
    });
    return v;
  }
  void Put(int cf, const std::string& key, const std::string& value) {
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[cf], key, value).ok());
    });
  }
  void Delete(int cf, const std::string& key) {
    Mutate([&](rocksdb::DB* db, auto& h) {
      ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), h[cf], key).ok());
    });
  }
  // Verify must fail, naming `seq` as the first bad position.
  storage::VerifyReport ExpectBadAt(uint64_t seq, const std::string& what) {
    storage::VerifyReport r = Verify();
    EXPECT_FALSE(r.ok) << what;
    EXPECT_EQ(r.first_bad_seq, seq) << what << ": " << r.problem;
    return r;
  }

  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
  std::vector<uint64_t> head_sizes_;
};

TEST_F(VerifyTest, IntactLedgerVerifies) {
  storage::VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.events, kEvents);
  EXPECT_EQ(r.high_water_size, kEvents);
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

// The index column families, entry by entry: every event's stream, agency
// and subject entries deleted, renamed or pointed elsewhere, one at a time,
// is found at that event's seq; an entry no event names is found at the seq
// it names.
TEST_F(VerifyTest, EveryIndexEntryDamageIsFoundAtTheSeqItConcerns) {
  ASSERT_TRUE(Verify().ok);
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    v1::EventHeader h;
    ASSERT_TRUE(h.ParseFromString(Get(schema::kEvents, schema::BE64(seq))));
    std::vector<std::pair<int, std::string>> entries = {
        {schema::kStreams, schema::PrefixedKey(h.stream(), h.stream_version())}};
    for (const std::string& a : h.agencies())
      entries.emplace_back(schema::kAgencyIndex, schema::PrefixedKey(a, seq));
    if (!h.subject().empty())
      entries.emplace_back(schema::kSubjectIndex, schema::PrefixedKey(h.subject(), seq));
    for (const auto& [cf, key] : entries) {
      const std::string value = Get(cf, key);
      Delete(cf, key);
      ExpectBadAt(seq, absl::StrCat("deleted index entry of cf ", cf));
      // Renamed: the event's entry gone, one under a name it does not carry.
      std::string renamed = key;
      renamed[0] = static_cast<char>(renamed[0] ^ 0x01);
      Put(cf, renamed, value);
      ExpectBadAt(seq, absl::StrCat("renamed index entry of cf ", cf));
      Delete(cf, renamed);
      Put(cf, key, value);
    }
    // The stream entry pointing at another event.
    const std::string& stream_key = entries[0].second;
    const uint64_t other = seq % kEvents + 1;
    Put(schema::kStreams, stream_key, schema::BE64(other));
    ExpectBadAt(seq, "stream entry pointing elsewhere");
    Put(schema::kStreams, stream_key, schema::BE64(seq));
    // An agency entry for an agency the event does not name.
    Put(schema::kAgencyIndex, schema::PrefixedKey("org.zzz", seq), "");
    ExpectBadAt(seq, "an entry no event names");
    Delete(schema::kAgencyIndex, schema::PrefixedKey("org.zzz", seq));
  }
  // A stream version no event has.
  Put(schema::kStreams, schema::PrefixedKey("referral/v0", 99), schema::BE64(2));
  EXPECT_FALSE(Verify().ok);
  Delete(schema::kStreams, schema::PrefixedKey("referral/v0", 99));
  EXPECT_TRUE(Verify().ok) << Verify().problem;
}

TEST_F(VerifyTest, AMissingOrStrayPayloadIsDamage) {
  for (uint64_t seq : {uint64_t{1}, uint64_t{7}, kEvents}) {
    const std::string payload = Get(schema::kPayloads, schema::BE64(seq));
    Delete(schema::kPayloads, schema::BE64(seq));
    storage::VerifyReport r = ExpectBadAt(seq, "deleted payload");
    EXPECT_NE(r.problem.find("payload is missing"), std::string::npos) << r.problem;
    Put(schema::kPayloads, schema::BE64(seq), payload);
  }
  Put(schema::kPayloads, schema::BE64(kEvents + 1), "stray");
  ExpectBadAt(kEvents + 1, "a payload with no event");
  Delete(schema::kPayloads, schema::BE64(kEvents + 1));
  EXPECT_TRUE(Verify().ok);
}

TEST_F(VerifyTest, IdempotencyAndCursorDamageIsFound) {
  // Round 3 ("round-3") is one event, seq 7 (rounds of 1, 2, 3, 1, ...).
  const std::string key = "round-3";
  v1::StoredIdempotency rec;
  ASSERT_TRUE(rec.ParseFromString(Get(schema::kIdempotency, key)));
  ASSERT_EQ(rec.commit().first_seq(), 7u);
  const std::string original = rec.SerializeAsString();
  // Another version than its event's.
  rec.mutable_commit()->set_stream_versions(0, 9);
  Put(schema::kIdempotency, key, rec.SerializeAsString());
  ExpectBadAt(7, "idempotency record with another version");
  // A head size no head has.
  rec.ParseFromString(original);
  rec.set_head_size(rec.head_size() - 1);
  Put(schema::kIdempotency, key, rec.SerializeAsString());
  ExpectBadAt(7, "idempotency record naming no head");
  // Seqs past the log.
  rec.ParseFromString(original);
  rec.mutable_commit()->set_last_seq(kEvents + 3);
  Put(schema::kIdempotency, key, rec.SerializeAsString());
  EXPECT_FALSE(Verify().ok);
  Put(schema::kIdempotency, key, "\xff\xff damaged");
  storage::VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("does not parse"), std::string::npos) << r.problem;
  Put(schema::kIdempotency, key, original);
  // Its expiry entry gone: it would never expire.
  std::string expiry =
      schema::BE64(static_cast<uint64_t>(rec.commit().commit_time_unix_nanos() / 1000)) + key;
  Delete(schema::kIdemExpiry, expiry);
  ExpectBadAt(7, "idempotency record without its expiry entry");
  Put(schema::kIdemExpiry, expiry, "");
  ASSERT_TRUE(Verify().ok);
  // A cursor of 4 bytes.
  const std::string cursor = Get(schema::kCursors, "consumer/org.a/main");
  Put(schema::kCursors, "consumer/org.a/main", "\x01\x02\x03\x04");
  r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 0u);
  EXPECT_NE(r.problem.find("cursor"), std::string::npos) << r.problem;
  Put(schema::kCursors, "consumer/org.a/main", cursor);
  EXPECT_TRUE(Verify().ok);
}

TEST_F(VerifyTest, AStrayTreeNodeIsDamage) {
  storage::merkle::NodeId beyond{0, kEvents + 4};
  Put(schema::kMerkle, schema::MerkleKey(beyond), std::string(32, 'x'));
  ExpectBadAt(kEvents + 1, "a tree node beyond the tree");
  Delete(schema::kMerkle, schema::MerkleKey(beyond));
  EXPECT_TRUE(Verify().ok);
}

// The log against its durable high-water mark: short of it, another root at
// its size, or a mark of another log id. A backup has no mark, and verifies.
TEST_F(VerifyTest, TheLogIsCheckedAgainstItsHighWaterMark) {
  auto* fs = rocksdb::FileSystem::Default().get();
  const std::string dir = dir_.Sub("ledger");
  auto mark = storage::HighWaterFile::Read(fs, dir);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  const storage::HighWater original = **mark;
  storage::HighWater ahead = original;
  ahead.size = kEvents + 5;
  ASSERT_TRUE(storage::HighWaterFile::Create(fs, dir, ahead).ok());
  storage::VerifyReport r = ExpectBadAt(kEvents + 1, "a log short of its mark");
  EXPECT_NE(r.problem.find("short"), std::string::npos) << r.problem;
  storage::HighWater forked = original;
  forked.size = 5;
  ASSERT_TRUE(storage::HighWaterFile::Create(fs, dir, forked).ok());
  ExpectBadAt(5, "another root at the mark's size");
  storage::HighWater foreign = original;
  foreign.log_id = std::string(32, 'f');
  ASSERT_TRUE(storage::HighWaterFile::Create(fs, dir, foreign).ok());
  r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("log id"), std::string::npos) << r.problem;
  ASSERT_TRUE(storage::HighWaterFile::Create(fs, dir, original).ok());
  EXPECT_TRUE(Verify().ok);
  std::filesystem::remove(std::filesystem::path(dir) / schema::kHighWaterFile);
  r = Verify();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_FALSE(r.high_water_size.has_value());
}

// The background scrub runs the same checks on a snapshot of the live
// ledger: it passes a healthy ledger while appends land, and finds damage the
// open checks cannot see, after which the ledger fails stop.
class ScrubTest : public VerifyTest {
 protected:
  std::unique_ptr<storage::LocalLedger> OpenLive(
      absl::Duration scrub_interval = absl::ZeroDuration(),
      std::function<void(const absl::StatusOr<storage::VerifyReport>&)> after_scrub = nullptr) {
    storage::LedgerOptions o = Options();
    o.verifier = verifier_.get();
    o.scrub_interval = scrub_interval;
    o.test_after_scrub = std::move(after_scrub);
    auto ledger = storage::LocalLedger::Open(o);
    EXPECT_TRUE(ledger.ok()) << ledger.status();
    return ledger.ok() ? *std::move(ledger) : nullptr;
  }

  static v1::ReadIndexRequest BySubject(const std::string& subject) {
    v1::ReadIndexRequest r;
    r.set_subject(subject);
    return r;
  }
};

TEST_F(ScrubTest, AHealthyLedgerPassesWhileAppendsLand) {
  auto ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> appended{0};
  std::atomic<bool> failed{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load() && !failed.load(); ++i) {
      v1::AppendRequest r = Event("load/s" + std::to_string(i % 7), "E", "p" + std::to_string(i));
      r.mutable_events(0)->add_agencies("org.a");
      r.mutable_events(0)->set_subject("subject-" + std::to_string(i % 5));
      r.set_idempotency_key("load-" + std::to_string(i));
      auto c = ledger->Append(r);
      EXPECT_TRUE(c.ok()) << c.status();
      failed = !c.ok();
      ++appended;
    }
  });
  // Each scrub sees a snapshot taken between rounds: never half a round.
  for (int i = 0; (i < 5 || appended.load() < 50) && !failed.load(); ++i) {
    absl::StatusOr<storage::VerifyReport> r = ledger->Scrub();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok) << r->problem;
    EXPECT_TRUE(r->signatures_checked);
    EXPECT_GE(r->events, kEvents);
  }
  stop = true;
  writer.join();
  EXPECT_TRUE(ledger->writer_status().ok());
  EXPECT_TRUE(ledger->damage().ok());
}

TEST_F(ScrubTest, DamageTheOpenChecksCannotSeeFailsTheLedgerStop) {
  // Event seq 5 is of subject-0; without its entry that person's trail is
  // one event short, and nothing at open notices.
  Delete(schema::kSubjectIndex, schema::PrefixedKey("subject-0", 5));
  auto ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  auto trail = ledger->ReadIndex(BySubject("subject-0"));
  ASSERT_TRUE(trail.ok());
  EXPECT_EQ(trail->events_size(), 3);  // seqs 1, 9, 13: short, silently

  absl::StatusOr<storage::VerifyReport> r = ledger->Scrub();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_bad_seq, 5u) << r->problem;
  // Fail-stop: every read and every append answers DATA_LOSS.
  EXPECT_TRUE(absl::IsDataLoss(ledger->damage()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->ReadIndex(BySubject("subject-0")).status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->Read(v1::ReadRequest()).status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->Head().status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->GetReceipt(1).status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->ProveConsistency(1, kEvents).status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->Backup(dir_.Sub("backup")).status()));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("backup")));
  EXPECT_TRUE(absl::IsDataLoss(ledger->Append(Event("after/damage")).status()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->writer_status()));
  // What the refusal says names the seq and the kind of damage, no record.
  const std::string message(ledger->damage().message());
  EXPECT_NE(message.find("seq 5"), std::string::npos) << message;
  EXPECT_EQ(message.find("subject-0"), std::string::npos) << message;
  ledger->Close().IgnoreError();  // may repeat the fail-stop cause
  // Nothing was written after the damage was found.
  auto size = storage::VerifyLedgerDir(dir_.Sub("ledger"), verifier_.get(), nullptr);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->events, kEvents);
}

TEST_F(ScrubTest, TheBackgroundScrubRunsAtItsInterval) {
  absl::Notification scrubbed;
  std::atomic<int> scrubs{0};
  {
    auto ledger = OpenLive(absl::Milliseconds(1), [&](const auto& r) {
      // A scrub that closing interrupts ends CANCELLED; any other result of
      // a clean ledger is a clean report.
      EXPECT_TRUE(absl::IsCancelled(r.status()) || (r.ok() && r->ok)) << r.status();
      if (r.ok() && ++scrubs == 3) scrubbed.Notify();
    });
    ASSERT_NE(ledger, nullptr);
    scrubbed.WaitForNotification();
    EXPECT_TRUE(ledger->damage().ok());
  }  // closing stops the scrub thread
  FlipByte(schema::kPayloads, schema::BE64(7), 2);
  absl::Notification found;
  auto ledger = OpenLive(absl::Milliseconds(1), [&](const auto& r) {
    if (r.ok() && !r->ok) found.Notify();
  });
  ASSERT_NE(ledger, nullptr);
  found.WaitForNotification();
  EXPECT_TRUE(absl::IsDataLoss(ledger->damage()));
  EXPECT_TRUE(absl::IsDataLoss(ledger->writer_status()));
}

TEST_F(ScrubTest, WithoutAKeyTheScrubChecksRootsButNotSignatures) {
  auto ledger = storage::LocalLedger::Open(Options());
  ASSERT_TRUE(ledger.ok());
  auto r = (*ledger)->Scrub();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_FALSE(r->signatures_checked);
  EXPECT_EQ(r->heads, head_sizes_.size() + 1);
}

// A payload altered below RocksDB's checksums (rewritten whole, same size)
// is refused on read: the hash its header carries no longer matches.
TEST_F(ScrubTest, AReadChecksEachPayloadAgainstItsHeader) {
  FlipByte(schema::kPayloads, schema::BE64(4), 0);
  auto ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  v1::ReadRequest with;
  with.set_include_payloads(true);
  absl::Status s = ledger->Read(with).status();
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find("seq 4"), std::string::npos) << s;
  v1::ReadIndexRequest idx;
  idx.set_agency("org.a");
  idx.set_include_payloads(true);
  EXPECT_TRUE(absl::IsDataLoss(ledger->ReadIndex(idx).status()));
  // Headers alone are intact and still readable.
  EXPECT_TRUE(ledger->Read(v1::ReadRequest()).ok());
  // Negative control: the same byte restored reads again.
  ledger.reset();
  Restore(schema::kPayloads, schema::BE64(4), 0);
  ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  EXPECT_TRUE(ledger->Read(with).ok());
}

// A header altered below RocksDB's checksums (rewritten whole, still a valid
// header of the same seq) is refused on read: it no longer hashes to the
// tree's leaf at its seq, though nothing at open would notice.
TEST_F(ScrubTest, AReadChecksEachHeaderAgainstTheTreesLeaf) {
  // Bytes 0-3 are the seq and the stream name's tag and length: "referral/..."
  // becomes "reFerral/...".
  const size_t in_stream_name = 6;
  FlipByte(schema::kEvents, schema::BE64(4), in_stream_name);
  auto ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  absl::Status s = ledger->Read(v1::ReadRequest()).status();
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find("seq 4"), std::string::npos) << s;
  EXPECT_EQ(s.message().find("referral"), std::string::npos) << s;  // names no record
  v1::ReadIndexRequest idx;
  idx.set_agency("org.a");
  EXPECT_TRUE(absl::IsDataLoss(ledger->ReadIndex(idx).status()));
  v1::ReadRequest others;  // the events around it still read
  others.set_from_seq(5);
  EXPECT_TRUE(ledger->Read(others).ok());
  // Negative control: the same byte restored reads again.
  ledger.reset();
  Restore(schema::kEvents, schema::BE64(4), in_stream_name);
  ledger = OpenLive();
  ASSERT_NE(ledger, nullptr);
  EXPECT_TRUE(ledger->Read(v1::ReadRequest()).ok());
  EXPECT_TRUE(ledger->ReadIndex(idx).ok());
}

}  // namespace
}  // namespace careloop::testing
