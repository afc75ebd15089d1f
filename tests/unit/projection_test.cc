// The projection runner: catch-up, WaitFor(min_seq), and resuming from the
// seq stored with the projection's state after a restart.
#include <gtest/gtest.h>

#include "storage/local_ledger.h"
#include "storage/rocksdb_projection.h"
#include "storage/schema.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

// Counts events per stream; the count and the applied seq share one batch.
class StreamCounter final : public storage::RocksDbProjection {
 public:
  uint64_t Count(const std::string& stream) {
    std::string v;
    if (!db()->Get(rocksdb::ReadOptions(), "count/" + stream, &v).ok()) return 0;
    return storage::schema::DecodeBE64(v);
  }
  int applied_events = 0;

 protected:
  absl::Status ApplyEvent(const v1::Event& e, rocksdb::WriteBatch* batch) override {
    const std::string& s = e.header().stream();
    uint64_t n = Count(s) + pending_[s] + 1;
    pending_[s] = pending_[s] + 1;
    batch->Put("count/" + s, storage::schema::BE64(n));
    ++applied_events;
    return absl::OkStatus();
  }

 public:
  absl::Status Apply(const std::vector<v1::Event>& events) override {
    pending_.clear();
    absl::Status s = RocksDbProjection::Apply(events);
    pending_.clear();
    return s;
  }

 private:
  std::map<std::string, uint64_t> pending_;
};

// A ledger on disk in a temp dir.
class ProjectionRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::LedgerOptions o;
    o.dir = dir.Sub("ledger");
    o.signer = signer.get();
    ledger = storage::LocalLedger::Open(o);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
  }
  TempDir dir;
  std::unique_ptr<trust::Ed25519HeadSigner> signer = TestSigner();
  absl::StatusOr<std::unique_ptr<storage::LocalLedger>> ledger;
};

TEST_F(ProjectionRunnerTest, CatchesUpWaitsAndResumesFromItsStoredSeq) {
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE((*ledger)->Append(Event(i % 2 ? "referral/a" : "referral/b")).ok());

  {
    StreamCounter counter;
    ASSERT_TRUE(counter.Open(dir.Sub("projection")).ok());
    storage::ProjectionRunner runner(ledger->get(), &counter);
    ASSERT_TRUE(runner.Start().ok());
    ASSERT_TRUE(runner.WaitFor(40, absl::Seconds(30)).ok());
    EXPECT_EQ(counter.Count("referral/a"), 20u);
    EXPECT_EQ(counter.Count("referral/b"), 20u);
    // Read-your-writes: a write's commit seq is what a read waits for.
    auto c = (*ledger)->Append(Event("referral/a"));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(runner.WaitFor(c->last_seq(), absl::Seconds(30)).ok());
    EXPECT_EQ(counter.Count("referral/a"), 21u);
    EXPECT_EQ(runner.WaitFor(1000, absl::Milliseconds(20)).code(),
              absl::StatusCode::kDeadlineExceeded);
    runner.Stop();
  }
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*ledger)->Append(Event("referral/b")).ok());
  {
    StreamCounter counter;
    ASSERT_TRUE(counter.Open(dir.Sub("projection")).ok());
    EXPECT_EQ(*counter.AppliedSeq(), 41u);
    storage::ProjectionRunner runner(ledger->get(), &counter);
    ASSERT_TRUE(runner.Start().ok());
    ASSERT_TRUE(runner.WaitFor(46, absl::Seconds(30)).ok());
    EXPECT_EQ(counter.applied_events, 5) << "only the new events are applied";
    EXPECT_EQ(counter.Count("referral/b"), 25u);
    EXPECT_EQ(counter.Count("referral/a"), 21u);
  }
}

// Records what each applied event carried.
class PayloadRecorder final : public storage::Projection {
 public:
  absl::StatusOr<uint64_t> AppliedSeq() override { return uint64_t{0}; }
  absl::Status Apply(const std::vector<v1::Event>& events) override {
    for (const v1::Event& e : events) seen.emplace_back(e.header().stream(), e.payload());
    return absl::OkStatus();
  }
  PayloadFilter PayloadsWanted() const override {
    return [](const v1::EventHeader& h) { return h.stream() == "agency/a"; };
  }
  std::vector<std::pair<std::string, std::string>> seen;
};

TEST_F(ProjectionRunnerTest, ReadsOnlyThePayloadsItIsAskedFor) {
  for (int i = 0; i < 30; ++i) {
    const std::string stream = i % 3 == 0 ? "agency/a" : "referral/x";
    ASSERT_TRUE((*ledger)->Append(Event(stream, "E", "p" + std::to_string(i))).ok());
  }
  PayloadRecorder recorder;
  storage::ProjectionRunner runner(ledger->get(), &recorder);
  ASSERT_TRUE(runner.Start().ok());
  ASSERT_TRUE(runner.WaitFor(30, absl::Seconds(30)).ok());
  runner.Stop();
  ASSERT_EQ(recorder.seen.size(), 30u) << "every header arrives, in order";
  for (int i = 0; i < 30; ++i) {
    if (i % 3 == 0) {
      EXPECT_EQ(recorder.seen[i], std::make_pair(std::string("agency/a"), "p" + std::to_string(i)));
    } else {
      EXPECT_EQ(recorder.seen[i], std::make_pair(std::string("referral/x"), std::string()));
    }
  }
}

}  // namespace
}  // namespace careloop::testing
