// The edge's integrity monitor (services/edge/privacy_desk.h, LogMonitor)
// over real ledgers with real signed heads: green while the log only grows;
// red for another log, a rollback and a head signed by another key, and red
// stays red (the first alarm kept as evidence) until an operator clears it;
// without a verifier key it says the log is not monitored.
#include <gtest/gtest.h>

#include <filesystem>

#include "services/edge/privacy_desk.h"
#include "tests/support/consent_env.h"

namespace careloop::edge {
namespace {

using careloop::testing::ConsentEnv;

class EdgeMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(a_.Start().ok());
    ASSERT_TRUE(b_.Start().ok());
    vkey_ = careloop::testing::TestSigner()->VerifierKey();
  }

  // The monitor's view of `env`'s ledger (or of its head at `size`).
  absl::StatusOr<Integrity> Check(LogMonitor& m, ConsentEnv& env, uint64_t size = 0) {
    storage::Ledger* l = env.ledger();
    return m.Check([l, size] { return l->Head(size); },
                   [l](uint64_t s1, uint64_t s2) { return l->ProveConsistency(s1, s2); },
                   absl::ToUnixNanos(env.clock().Now()));
  }

  void Grow(ConsentEnv& env) { ASSERT_TRUE(env.NewSubject(absl::StrCat("m-", ++grown_)).ok()); }

  careloop::testing::TempDir dir_;
  ConsentEnv a_, b_;
  std::string vkey_;
  int grown_ = 0;
};

TEST_F(EdgeMonitorTest, GreenWhileTheLogGrowsRedForAnotherLogAndRedStaysRed) {
  LogMonitor m(vkey_, dir_.Sub("monitor"));
  auto first = Check(m, a_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->known);
  EXPECT_TRUE(first->ok) << first->problem;
  Grow(a_);
  auto grown = Check(m, a_);
  ASSERT_TRUE(grown.ok());
  EXPECT_TRUE(grown->ok) << grown->problem;
  EXPECT_GT(grown->tree_size, first->tree_size);

  // Another log signed with the same key: red, with both heads named.
  auto other = Check(m, b_);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->ok);
  EXPECT_NE(other->problem.find(b_.ledger()->Head(0)->log_id()), std::string::npos)
      << other->problem;
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("monitor.alert")));
  // Back on the right log: still red, the first alarm kept.
  auto again = Check(m, a_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->ok);
  EXPECT_EQ(again->problem, other->problem);
  // The operator, having looked, clears it: green again.
  std::filesystem::remove(dir_.Sub("monitor.alert"));
  auto cleared = Check(m, a_);
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->ok) << cleared->problem;
}

TEST_F(EdgeMonitorTest, ARollbackAndAForeignKeyAreRed) {
  LogMonitor m(vkey_, dir_.Sub("monitor"));
  const uint64_t old_size = a_.ledger()->Head(0)->tree_size();
  Grow(a_);
  Grow(a_);
  ASSERT_TRUE(Check(m, a_)->ok);
  // An older (genuinely signed) head after a newer one: rolled back.
  auto rolled = Check(m, a_, old_size);
  ASSERT_TRUE(rolled.ok());
  EXPECT_FALSE(rolled->ok);
  EXPECT_FALSE(rolled->problem.empty());

  // Pinned to another key, the hub's heads do not verify.
  LogMonitor foreign(careloop::testing::TestSigner("careloop.test", 99)->VerifierKey(),
                     dir_.Sub("foreign"));
  auto f = Check(foreign, a_);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->ok);

  // No key at all: not monitored, said plainly, and nothing written.
  LogMonitor none("", dir_.Sub("none"));
  auto n = Check(none, a_);
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->known);
  EXPECT_NE(n->problem.find("hub-log.vkey"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("none")));
}

}  // namespace
}  // namespace careloop::edge
