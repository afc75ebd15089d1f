// Damage is never silent: a ledger that lost acknowledged events, or holds
// another history at a size it acknowledged, is refused at open instead of
// served short or forked; a flipped byte in the WAL of a crashed ledger is
// either refused or changes nothing; after a failed sync nothing more is
// acknowledged, even when the next sync succeeds. Real RocksDB on disk; the
// faults come from our FileSystemWrapper. Seeds are printed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "storage/high_water.h"
#include "storage/local_ledger.h"
#include "storage/receipt.h"
#include "storage/schema.h"
#include "storage/testing_fs.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

namespace fs = std::filesystem;

class IntegrityEnv {
 public:
  IntegrityEnv() : signer_(TestSigner()) {}
  absl::StatusOr<std::unique_ptr<storage::LocalLedger>> Open(
      const std::string& dir, std::shared_ptr<rocksdb::FileSystem> file_system = nullptr) {
    storage::LedgerOptions o;
    o.dir = dir;
    o.signer = signer_.get();
    o.fs = std::move(file_system);
    return storage::LocalLedger::Open(o);
  }
  std::string Dir(const std::string& name) { return dir_.Sub(name); }

 private:
  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
};

void AppendN(storage::Ledger* l, const std::string& stream, int n) {
  for (int i = 0; i < n; ++i) {
    auto c = l->Append(Event(stream, "NoteAdded", absl::StrCat("payload ", i)));
    ASSERT_TRUE(c.ok()) << c.status();
  }
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void Spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}
void CopyDir(const std::string& from, const std::string& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}
fs::path HighWaterPath(const std::string& dir) {
  return fs::path(dir) / storage::schema::kHighWaterFile;
}

TEST(HighWaterFile, TheNewestWholeSlotWinsAndTwoBadSlotsAreDataLoss) {
  TempDir dir;
  rocksdb::FileSystem* fsys = rocksdb::FileSystem::Default().get();
  const std::string d = dir.Sub("hw");
  fs::create_directories(d);
  EXPECT_FALSE(storage::HighWaterFile::Read(fsys, d)->has_value()) << "no file, no mark";
  storage::HighWater m{std::string(32, 'a'), 7, {}};
  m.root[0] = 1;
  auto f = storage::HighWaterFile::Create(fsys, d, m);
  ASSERT_TRUE(f.ok()) << f.status();
  m.size = 8;
  ASSERT_TRUE((*f)->Write(m).ok());
  m.size = 9;
  ASSERT_TRUE((*f)->Write(m).ok());
  EXPECT_EQ((*storage::HighWaterFile::Read(fsys, d))->size, 9u);
  // A torn write of the newest slot (slot 1 holds counter 3): the other holds.
  std::string bytes = Slurp(HighWaterPath(d));
  bytes[4096 + 20] ^= 0x40;
  Spit(HighWaterPath(d), bytes);
  EXPECT_EQ((*storage::HighWaterFile::Read(fsys, d))->size, 8u);
  bytes[20] ^= 0x40;
  Spit(HighWaterPath(d), bytes);
  auto bad = storage::HighWaterFile::Read(fsys, d);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "high-water mark")) << bad.status();
}

// An old copy of the database put back (a backup copied over, a disk image,
// a WAL that lost its tail): the mark says more was acknowledged.
TEST(LedgerIntegrity, ALedgerBehindItsHighWaterMarkIsRefused) {
  IntegrityEnv env;
  const std::string live = env.Dir("live"), old = env.Dir("old");
  {
    auto l = env.Open(live);
    ASSERT_TRUE(l.ok()) << l.status();
    AppendN(l->get(), "referral/a", 20);
    ASSERT_TRUE((*l)->Close().ok());
  }
  CopyDir(live, old);
  {
    auto l = env.Open(live);
    ASSERT_TRUE(l.ok()) << l.status();
    AppendN(l->get(), "referral/a", 20);
    ASSERT_TRUE((*l)->Close().ok());
  }
  // The old copy with its own mark is a consistent ledger of 20.
  {
    auto l = env.Open(old);
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_EQ((*l)->size(), 20u);
    ASSERT_TRUE((*l)->Close().ok());
  }
  fs::copy_file(HighWaterPath(live), HighWaterPath(old), fs::copy_options::overwrite_existing);
  auto refused = env.Open(old);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kDataLoss) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "starts short")) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "holds 20 events but acknowledged 40"))
      << refused.status();
}

TEST(LedgerIntegrity, AnotherHistoryAtAnAcknowledgedSizeIsRefused) {
  IntegrityEnv env;
  const std::string live = env.Dir("live"), old = env.Dir("old");
  {
    auto l = env.Open(live);
    ASSERT_TRUE(l.ok());
    AppendN(l->get(), "referral/a", 10);
    ASSERT_TRUE((*l)->Close().ok());
  }
  CopyDir(live, old);
  for (const auto& [dir, stream] : {std::pair{live, "referral/a"}, std::pair{old, "referral/b"}}) {
    auto l = env.Open(dir);
    ASSERT_TRUE(l.ok()) << l.status();
    AppendN(l->get(), stream, dir == live ? 10 : 15);
    ASSERT_TRUE((*l)->Close().ok());
  }
  // The copy went on with other events: 25 > 20, but seq 11..20 differ.
  fs::copy_file(HighWaterPath(live), HighWaterPath(old), fs::copy_options::overwrite_existing);
  auto refused = env.Open(old);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kDataLoss) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "forked")) << refused.status();
}

TEST(LedgerIntegrity, AMissingMarkIsRefusedAndARestoreStartsANewOne) {
  IntegrityEnv env;
  const std::string live = env.Dir("live"), backup = env.Dir("backup"),
                    restored = env.Dir("restored");
  std::string log_id;
  {
    auto l = env.Open(live);
    ASSERT_TRUE(l.ok());
    AppendN(l->get(), "referral/a", 5);
    ASSERT_TRUE((*l)->Backup(backup).ok());
    log_id = (*l)->log_id();
    ASSERT_TRUE((*l)->Close().ok());
  }
  EXPECT_FALSE(fs::exists(HighWaterPath(backup))) << "a backup carries no mark";
  // A backup used as a data dir as it is would reuse the log id: refused.
  auto copied = env.Open(backup);
  ASSERT_EQ(copied.status().code(), absl::StatusCode::kDataLoss) << copied.status();
  EXPECT_TRUE(absl::StrContains(copied.status().message(), "is missing")) << copied.status();
  auto r = storage::RestoreLedger(backup, restored);
  ASSERT_TRUE(r.ok()) << r.status();
  auto l = env.Open(restored);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_NE((*l)->log_id(), log_id);
  EXPECT_EQ((*l)->size(), 5u);
  EXPECT_TRUE(fs::exists(HighWaterPath(restored)));
  ASSERT_TRUE((*l)->Close().ok());
}

// A crashed ledger (its directory copied while it runs: every acknowledged
// event is in the WAL) with one byte flipped at a seeded offset of the WAL:
// it opens with every acknowledged event as acknowledged, or is refused.
// Never shorter, never different.
TEST(LedgerIntegrity, AFlippedWalByteIsRefusedOrHarmless) {
  IntegrityEnv env;
  const std::string live = env.Dir("live"), crashed = env.Dir("crashed");
  auto l = env.Open(live);
  ASSERT_TRUE(l.ok());
  AppendN(l->get(), "referral/a", 300);
  v1::ReadRequest all;
  all.set_from_seq(1);
  all.set_limit(1000);
  all.set_include_payloads(true);
  auto acknowledged = (*l)->Read(all);
  ASSERT_TRUE(acknowledged.ok());
  CopyDir(live, crashed);
  ASSERT_TRUE((*l)->Close().ok());
  fs::path wal;
  for (const auto& e : fs::directory_iterator(crashed)) {
    if (e.path().extension() != ".log") continue;
    if (wal.empty() || fs::file_size(e.path()) > fs::file_size(wal)) wal = e.path();
  }
  ASSERT_FALSE(wal.empty());
  const std::string image = Slurp(wal);
  ASSERT_GT(image.size(), 10'000u) << "the events are in the WAL";
  const uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  int refused = 0, opened = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string dir = env.Dir(absl::StrCat("flip-", i));
    CopyDir(crashed, dir);
    std::string bytes = image;
    const size_t at = rng() % bytes.size();
    bytes[at] = static_cast<char>(bytes[at] ^ (1 + rng() % 255));
    Spit(fs::path(dir) / wal.filename(), bytes);
    auto o = env.Open(dir);
    if (!o.ok()) {
      ++refused;
      EXPECT_TRUE(o.status().code() == absl::StatusCode::kDataLoss ||
                  absl::StrContains(o.status().message(), "orrupt"))
          << "offset " << at << ": " << o.status();
      continue;
    }
    ++opened;
    auto got = (*o)->Read(all);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->events_size(), acknowledged->events_size())
        << "offset " << at << " seed " << seed;
    for (int k = 0; k < got->events_size(); ++k) {
      EXPECT_EQ(got->events(k).header_bytes(), acknowledged->events(k).header_bytes()) << k;
      EXPECT_EQ(got->events(k).payload(), acknowledged->events(k).payload()) << k;
    }
    ASSERT_TRUE((*o)->Close().ok());
  }
  std::printf("WAL flips: %d refused, %d opened whole\n", refused, opened);
  EXPECT_GT(refused, 0) << "flips in the events' records must be noticed";
}

// Only the mark's file fails (in place writes), while the WAL is healthy.
class MarkFails final : public rocksdb::FileSystemWrapper {
 public:
  MarkFails() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "MarkFails"; }
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSRandomRWFile> base;
    rocksdb::IOStatus s = target()->NewRandomRWFile(f, o, &base, dbg);
    if (s.ok()) r->reset(new File(std::move(base), this));
    return s;
  }
  std::atomic<bool> full{false};
  std::atomic<bool> fail_once{false};  // the next write fails, later ones succeed

 private:
  class File final : public rocksdb::FSRandomRWFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSRandomRWFile> f, MarkFails* fs)
        : rocksdb::FSRandomRWFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Write(uint64_t offset, const rocksdb::Slice& data,
                            const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->full.load() || fs_->fail_once.exchange(false))
        return rocksdb::IOStatus::NoSpace("injected: no space left on device");
      return target()->Write(offset, data, o, dbg);
    }

   private:
    MarkFails* fs_;
  };
};

// Appends from 8 threads after `fail` made one sync fail: none is
// acknowledged, though the syncs after it succeed.
void ExpectNothingAcknowledgedAfter(IntegrityEnv& env, std::shared_ptr<rocksdb::FileSystem> faults,
                                    const std::function<void()>& fail) {
  const std::string dir = env.Dir("live");
  auto l = env.Open(dir, faults);
  ASSERT_TRUE(l.ok());
  AppendN(l->get(), "referral/ok", 3);
  fail();
  std::atomic<int> acked_after{0}, unavailable{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto c = (*l)->Append(Event(absl::StrCat("referral/t", t)));
        if (c.ok()) {
          acked_after.fetch_add(1);
        } else if (absl::IsUnavailable(c.status())) {
          unavailable.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(acked_after.load(), 0) << "acknowledged after the first failed sync";
  EXPECT_EQ(unavailable.load(), 160);
  EXPECT_EQ((*l)->size(), 3u);
  (*l)->Close().IgnoreError();
  l->reset();
  auto reopened = env.Open(dir);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_GE((*reopened)->size(), 3u) << "everything acknowledged is there";
  ASSERT_TRUE((*reopened)->Close().ok());
}

// A failed WAL sync (RocksDB also refuses every later write once one
// failed), and a failed mark write, whose retry would succeed: the syncer
// itself answers nothing once the writer stopped, including rounds already
// written behind the failure.
TEST(LedgerIntegrity, NothingIsAcknowledgedAfterAFailedSyncThatLaterSucceeds) {
  {
    IntegrityEnv env;
    auto faults =
        std::make_shared<storage::FaultInjectionFileSystem>(rocksdb::FileSystem::Default());
    ExpectNothingAcknowledgedAfter(env, faults, [&] { faults->fail_next_syncs(1); });
  }
  {
    IntegrityEnv env;
    auto faults = std::make_shared<MarkFails>();
    ExpectNothingAcknowledgedAfter(env, faults, [&] { faults->fail_once = true; });
  }
}

// A failed write of the mark stops the writer like a failed WAL sync: the
// round it would cover, durable in the WAL, is not acknowledged, nor is any
// later one.
TEST(LedgerIntegrity, AFailedMarkWriteStopsTheWriter) {
  IntegrityEnv env;
  auto faults = std::make_shared<MarkFails>();
  auto l = env.Open(env.Dir("live"), faults);
  ASSERT_TRUE(l.ok()) << l.status();
  AppendN(l->get(), "referral/ok", 2);
  faults->full = true;
  auto failed = (*l)->Append(Event("referral/full"));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_TRUE(absl::StrContains(failed.status().message(), "high-water mark")) << failed.status();
  faults->full = false;
  EXPECT_EQ((*l)->Append(Event("referral/after")).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*l)->size(), 2u);
  (*l)->Close().IgnoreError();
}

// A proof object whose unsigned fields repeat signed values must equal them,
// and a proof across two log ids (a restore) is refused naming both.
TEST(ProofObjects, UnsignedFieldsMustEqualTheSignedHeadsAndOneLogId) {
  IntegrityEnv env;
  auto a = env.Open(env.Dir("a"));
  auto b = env.Open(env.Dir("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  AppendN(a->get(), "referral/a", 10);
  AppendN(b->get(), "referral/a", 10);
  auto h1 = (*a)->Head(10);
  AppendN(a->get(), "referral/a", 10);
  auto h2 = (*a)->Head(20);
  auto proof = (*a)->ProveConsistency(10, 20);
  ASSERT_TRUE(h1.ok() && h2.ok() && proof.ok());
  auto verifier = VerifierFor(*TestSigner());
  EXPECT_TRUE(storage::VerifyConsistencyProof(*h1, *h2, *proof, *verifier).ok());
  for (int field = 0; field < 2; ++field) {
    v1::ConsistencyProof forged = *proof;
    if (field == 0) forged.set_size1(forged.size1() - 1);
    if (field == 1) forged.set_size2(forged.size2() + 1);
    auto v = storage::VerifyConsistencyProof(*h1, *h2, forged, *verifier);
    EXPECT_FALSE(v.ok()) << "field " << field;
    EXPECT_TRUE(absl::StrContains(v.status().message(), "signed heads are 10 and 20"))
        << v.status();
  }
  v1::SignedHead unsigned_size = *h1;
  unsigned_size.set_tree_size(9);
  EXPECT_FALSE(storage::VerifyConsistencyProof(unsigned_size, *h2, *proof, *verifier).ok());
  // b's head at 10 is signed by the same key, under another log id.
  auto other = (*b)->Head(10);
  ASSERT_TRUE(other.ok());
  auto cross = storage::VerifyConsistencyProof(*other, *h2, *proof, *verifier);
  ASSERT_FALSE(cross.ok());
  EXPECT_TRUE(absl::StrContains(cross.status().message(), (*b)->log_id())) << cross.status();
  EXPECT_TRUE(absl::StrContains(cross.status().message(), (*a)->log_id())) << cross.status();
  ASSERT_TRUE((*a)->Close().ok());
  ASSERT_TRUE((*b)->Close().ok());
}

}  // namespace
}  // namespace careloop::testing
