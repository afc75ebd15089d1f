// Faults under the ledger, injected with our own rocksdb::FileSystemWrapper:
// a failed fsync acknowledges nothing and stops the writer; a full disk gives
// a clear error, writes no partial events, and service resumes after space
// returns and a restart.
#include <gtest/gtest.h>

#include "storage/local_ledger.h"
#include "storage/testing_fs.h"
#include "storage/verify.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

class FaultEnv {
 public:
  FaultEnv()
      : signer_(TestSigner()),
        fs_(std::make_shared<storage::FaultInjectionFileSystem>(rocksdb::FileSystem::Default())) {}
  absl::StatusOr<std::unique_ptr<storage::LocalLedger>> Open(bool faulty) {
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.signer = signer_.get();
    if (faulty) o.fs = fs_;
    return storage::LocalLedger::Open(o);
  }
  storage::VerifyReport Verify() {
    auto v = VerifierFor(*signer_);
    auto r = storage::VerifyLedgerDir(dir_.Sub("ledger"), v.get(), nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : storage::VerifyReport{};
  }
  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::shared_ptr<storage::FaultInjectionFileSystem> fs_;
};

uint64_t StreamCount(storage::Ledger* l, const std::string& stream) {
  v1::ReadStreamRequest r;
  r.set_stream(stream);
  auto resp = l->ReadStream(r);
  EXPECT_TRUE(resp.ok());
  return resp.ok() ? resp->events_size() : 0;
}

TEST(LedgerFaults, FsyncErrorAcknowledgesNothingAndStopsTheWriter) {
  FaultEnv env;
  auto ledger = env.Open(true);
  ASSERT_TRUE(ledger.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ledger)->Append(Event("referral/ok")).ok());
  const uint64_t syncs_before = env.fs_->syncs();
  env.fs_->set_fail_sync(true);
  v1::AppendRequest r = Event("referral/during-fault");
  r.set_idempotency_key("retry-me");
  auto failed = (*ledger)->Append(r);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_NE(std::string(failed.status().message()).find("fsync failed"), std::string::npos)
      << failed.status();
  EXPECT_GT(env.fs_->syncs(), syncs_before) << "the write did try to sync";
  EXPECT_FALSE((*ledger)->writer_status().ok());
  EXPECT_EQ((*ledger)->size(), 3u) << "nothing of the failed round is visible";
  // Fail-stop: even with the disk healthy again, nothing more is acknowledged.
  env.fs_->set_fail_sync(false);
  EXPECT_EQ((*ledger)->Append(Event("referral/after")).status().code(),
            absl::StatusCode::kUnavailable);
  (*ledger)->Close().IgnoreError();
  ledger->reset();

  // Restart on a healthy disk. The unacknowledged round may or may not have
  // reached the log; either way a retry with its key lands exactly once.
  auto reopened = env.Open(false);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_GE((*reopened)->size(), 3u);
  EXPECT_LE((*reopened)->size(), 4u);
  auto retried = (*reopened)->Append(r);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(StreamCount(reopened->get(), "referral/during-fault"), 1u);
  EXPECT_EQ(StreamCount(reopened->get(), "referral/after"), 0u);
  ASSERT_TRUE((*reopened)->Close().ok());
  storage::VerifyReport report = env.Verify();
  EXPECT_TRUE(report.ok) << report.problem;
}

TEST(LedgerFaults, DiskFullGivesAClearErrorAndNoPartialEvents) {
  FaultEnv env;
  auto ledger = env.Open(true);
  ASSERT_TRUE(ledger.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ledger)->Append(Event("referral/ok")).ok());
  env.fs_->set_no_space(true);
  v1::AppendRequest big = Event("referral/full", "E", std::string(4096, 'x'));
  *big.add_events() = Event("referral/full2", "E", "y").events(0);
  auto failed = (*ledger)->Append(big);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(failed.status().message()).find("no space left on device"),
            std::string::npos)
      << failed.status();
  EXPECT_EQ((*ledger)->size(), 3u);
  (*ledger)->Close().IgnoreError();
  ledger->reset();
  env.fs_->set_no_space(false);  // space returns

  auto reopened = env.Open(true);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->size(), 3u) << "no partial events of the failed batch";
  EXPECT_EQ(StreamCount(reopened->get(), "referral/full"), 0u);
  EXPECT_EQ(StreamCount(reopened->get(), "referral/full2"), 0u);
  auto ok = (*reopened)->Append(big);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->first_seq(), 4u);
  ASSERT_TRUE((*reopened)->Close().ok());
  storage::VerifyReport report = env.Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.events, 5u);
}

}  // namespace
}  // namespace careloop::testing
