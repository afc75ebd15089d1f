// The split integration test: every service in its own careloopd process.
// Today the hub has one service, the ledger: RemoteLedger passes the same
// conformance suite against LedgerService in another process as LocalLedger
// does in-process, and a projection runs over the remote ledger. Later
// services join this file, each in its own process.
#include <gtest/gtest.h>

#include "storage/projection.h"
#include "tests/support/ledger_conformance.h"
#include "tests/support/remote_env.h"

namespace careloop::testing {
namespace {

INSTANTIATE_TYPED_TEST_SUITE_P(Remote, LedgerConformance, ::testing::Types<RemoteEnv>);

class CountingProjection final : public storage::Projection {
 public:
  absl::StatusOr<uint64_t> AppliedSeq() override { return applied; }
  absl::Status Apply(const std::vector<v1::Event>& events) override {
    for (const auto& e : events) {
      if (e.header().seq() != applied + 1) return absl::DataLossError("gap");
      applied = e.header().seq();
      bytes += e.payload().size();
    }
    return absl::OkStatus();
  }
  uint64_t applied = 0;
  uint64_t bytes = 0;
};

TEST(SplitIntegration, ProjectionOverTheRemoteLedgerSurvivesALedgerRestart) {
  RemoteEnv env;
  ASSERT_TRUE(env.Start().ok());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(env.ledger()->Append(Event("referral/p", "E", "12345")).ok());
  CountingProjection projection;
  auto runner = std::make_unique<storage::ProjectionRunner>(env.ledger(), &projection);
  ASSERT_TRUE(runner->Start().ok());
  ASSERT_TRUE(runner->WaitFor(10, absl::Seconds(30)).ok());
  EXPECT_EQ(projection.bytes, 50u);
  runner.reset();
  // The projection resumes from its own seq against a restarted ledger process.
  ASSERT_TRUE(env.Restart().ok());
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(env.ledger()->Append(Event("referral/p", "E", "12345")).ok());
  storage::ProjectionRunner again(env.ledger(), &projection);
  ASSERT_TRUE(again.Start().ok());
  ASSERT_TRUE(again.WaitFor(15, absl::Seconds(30)).ok());
  EXPECT_EQ(projection.bytes, 75u);
}

}  // namespace
}  // namespace careloop::testing
