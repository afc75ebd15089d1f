// The in-process LocalLedger: the conformance suite, plus what only an
// in-process test can pin down (round composition, the queue bound, time).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/synchronization/notification.h"
#include "base/status.h"
#include "storage/local_ledger.h"
#include "storage/schema.h"
#include "tests/support/ledger_conformance.h"

namespace careloop::testing {
namespace {

class LocalEnv {
 public:
  absl::Status Start() {
    signer_ = TestSigner();
    verifier_ = VerifierFor(*signer_);
    return Open();
  }
  storage::Ledger* ledger() { return ledger_.get(); }
  storage::LocalLedger* local() { return ledger_.get(); }
  absl::Status Restart() {
    RETURN_IF_ERROR(ledger_->Close());
    ledger_.reset();
    return Open();
  }
  const storage::NoteVerifier& verifier() { return *verifier_; }
  storage::LedgerOptions options() {
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.hub_name = "careloop.test";
    o.signer = signer_.get();
    o.clock = clock_;
    o.test_before_round = before_round_;
    o.queue_capacity = queue_capacity_;
    return o;
  }
  absl::Status Open() {
    ASSIGN_OR_RETURN(ledger_, storage::LocalLedger::Open(options()));
    return absl::OkStatus();
  }

  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
  std::unique_ptr<storage::LocalLedger> ledger_;
  Clock* clock_ = nullptr;
  std::function<void()> before_round_;
  size_t queue_capacity_ = 10000;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Local, LedgerConformance, ::testing::Types<LocalEnv>);

// Holds the writer at the start of its next round until released, so a test
// can queue several requests into one round.
class RoundGate {
 public:
  std::function<void()> Hook() {
    return [this] {
      absl::MutexLock lock(&mu_);
      entered_ = true;
      mu_.Await(absl::Condition(&open_));
    };
  }
  void WaitEntered() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&entered_));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }

 private:
  absl::Mutex mu_;
  bool entered_ = false;
  bool open_ = false;
};

struct Collected {
  absl::Mutex mu;
  std::vector<absl::StatusOr<v1::Commit>> results;
  int pending = 0;
  storage::AppendCallback Callback(size_t slot) {
    {
      absl::MutexLock lock(&mu);
      if (results.size() <= slot) results.resize(slot + 1, absl::UnknownError("pending"));
      ++pending;
    }
    return [this, slot](absl::StatusOr<v1::Commit> r) {
      absl::MutexLock lock(&mu);
      results[slot] = std::move(r);
      --pending;
    };
  }
  void WaitAll() {
    absl::MutexLock lock(&mu);
    auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pending == 0; };
    mu.Await(absl::Condition(&done));
  }
};

TEST(LocalLedger, PreconditionsAreEvaluatedInQueueOrderWithinOneRound) {
  LocalEnv env;
  RoundGate gate;
  env.before_round_ = gate.Hook();
  ASSERT_TRUE(env.Start().ok());
  Collected c;
  // The first request wakes the writer, which waits at the gate.
  v1::AppendRequest create = Event("referral/q");
  MustNotExist(&create, "referral/q");
  env.local()->AppendAsync(create, c.Callback(0));
  gate.WaitEntered();
  v1::AppendRequest second = Event("referral/q");
  ExpectVersion(&second, "referral/q", 1);  // holds only after the first
  env.local()->AppendAsync(second, c.Callback(1));
  v1::AppendRequest stale = Event("referral/q");
  ExpectVersion(&stale, "referral/q", 0);  // no longer holds
  env.local()->AppendAsync(stale, c.Callback(2));
  v1::AppendRequest third = Event("referral/q");
  ExpectVersion(&third, "referral/q", 2);
  env.local()->AppendAsync(third, c.Callback(3));
  uint64_t rounds_before = env.local()->rounds();
  gate.Open();
  c.WaitAll();
  EXPECT_EQ(env.local()->rounds() - rounds_before, 1u) << "all four were one commit round";
  ASSERT_TRUE(c.results[0].ok());
  ASSERT_TRUE(c.results[1].ok()) << c.results[1].status();
  EXPECT_EQ(c.results[2].status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c.results[3].ok()) << c.results[3].status();
  EXPECT_EQ(c.results[1]->stream_versions(0), 2u);
  EXPECT_EQ(c.results[3]->stream_versions(0), 3u);
  // Every answer of the round carries the round's one head.
  EXPECT_EQ(c.results[0]->head().tree_size(), 3u);
  EXPECT_EQ(c.results[3]->head().checkpoint(), c.results[0]->head().checkpoint());
}

TEST(LocalLedger, IdempotencyKeyTwiceInOneRound) {
  LocalEnv env;
  RoundGate gate;
  env.before_round_ = gate.Hook();
  ASSERT_TRUE(env.Start().ok());
  Collected c;
  v1::AppendRequest r = Event("referral/k");
  r.set_idempotency_key("k1");
  env.local()->AppendAsync(r, c.Callback(0));
  gate.WaitEntered();
  env.local()->AppendAsync(r, c.Callback(1));
  v1::AppendRequest other = Event("referral/k", "X", "other");
  other.set_idempotency_key("k1");
  env.local()->AppendAsync(other, c.Callback(2));
  gate.Open();
  c.WaitAll();
  ASSERT_TRUE(c.results[0].ok());
  ASSERT_TRUE(c.results[1].ok());
  EXPECT_TRUE(c.results[1]->deduplicated());
  EXPECT_EQ(c.results[1]->first_seq(), c.results[0]->first_seq());
  EXPECT_EQ(c.results[2].status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(env.local()->size(), 1u);
}

TEST(LocalLedger, GroupCommitWritesManyAppendsWithOneSync) {
  LocalEnv env;
  RoundGate gate;
  env.before_round_ = gate.Hook();
  ASSERT_TRUE(env.Start().ok());
  Collected c;
  env.local()->AppendAsync(Event("bench/0"), c.Callback(0));
  gate.WaitEntered();
  for (size_t i = 1; i < 64; ++i)
    env.local()->AppendAsync(Event("bench/" + std::to_string(i)), c.Callback(i));
  uint64_t before = env.local()->rounds();
  gate.Open();
  c.WaitAll();
  EXPECT_EQ(env.local()->rounds() - before, 1u);
  EXPECT_EQ(env.local()->size(), 64u);
  for (auto& r : c.results) EXPECT_TRUE(r.ok());
}

TEST(LocalLedger, FullQueueAnswersResourceExhaustedAtOnce) {
  LocalEnv env;
  RoundGate gate;
  env.before_round_ = gate.Hook();
  env.queue_capacity_ = 4;
  ASSERT_TRUE(env.Start().ok());
  Collected c;
  env.local()->AppendAsync(Event("q/0"), c.Callback(0));
  gate.WaitEntered();  // the writer is held; request 0 is still queued
  for (size_t i = 1; i < 4; ++i)
    env.local()->AppendAsync(Event("q/" + std::to_string(i)), c.Callback(i));
  absl::StatusOr<v1::Commit> refused = absl::UnknownError("not answered");
  env.local()->AppendAsync(Event("q/4"),
                           [&](absl::StatusOr<v1::Commit> r) { refused = std::move(r); });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << "answered at once, not queued";
  EXPECT_NE(std::string(refused.status().message()).find("queue is full"), std::string::npos);
  gate.Open();
  c.WaitAll();
  EXPECT_EQ(env.local()->size(), 4u);
}

TEST(LocalLedger, IdempotencyKeysExpireAfterTheWindow) {
  FakeClock clock;
  LocalEnv env;
  env.clock_ = &clock;
  ASSERT_TRUE(env.Start().ok());
  v1::AppendRequest r = Event("referral/w");
  r.set_idempotency_key("k");
  auto first = env.ledger()->Append(r);
  ASSERT_TRUE(first.ok());
  clock.Advance(absl::Hours(24 * 7) - absl::Seconds(1));
  auto within = env.ledger()->Append(r);
  ASSERT_TRUE(within.ok());
  EXPECT_TRUE(within->deduplicated());
  clock.Advance(absl::Seconds(2));
  auto after = env.ledger()->Append(r);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->deduplicated()) << "past the window the key is free again";
  EXPECT_EQ(after->first_seq(), 2u);
}

TEST(LocalLedger, MinSeqBeyondTheLedgerTimesOut) {
  LocalEnv env;
  ASSERT_TRUE(env.Start().ok());
  EXPECT_EQ(env.local()->WaitForSeq(5, absl::Milliseconds(20)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(LocalLedger, BackupWhileServingThenRestoreStartsANewLogId) {
  LocalEnv env;
  ASSERT_TRUE(env.Start().ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(env.ledger()->Append(Event("referral/b")).ok());
  auto backup = env.ledger()->Backup(env.dir_.Sub("backup"));
  ASSERT_TRUE(backup.ok()) << backup.status();
  EXPECT_EQ(backup->tree_size(), 5u);
  EXPECT_EQ(env.ledger()->Backup(env.dir_.Sub("backup")).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(env.ledger()->Append(Event("referral/b")).ok());  // lost by the restore
  std::string old_log = env.local()->log_id();
  ASSERT_TRUE(env.local()->Close().ok());

  auto refused = storage::RestoreLedger(env.dir_.Sub("backup"), env.dir_.Sub("ledger"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << "target not empty";
  auto restored = storage::RestoreLedger(env.dir_.Sub("backup"), env.dir_.Sub("restored"));
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->tree_size, 5u);
  EXPECT_EQ(restored->previous_log_id, old_log);
  EXPECT_NE(restored->new_log_id, old_log);

  storage::LedgerOptions o = env.options();
  o.dir = env.dir_.Sub("restored");
  auto reopened = storage::LocalLedger::Open(o);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto head = (*reopened)->Head();
  EXPECT_EQ(head->tree_size(), 5u);
  EXPECT_EQ(head->log_id(), restored->new_log_id) << "the head announces the new log at once";
  EXPECT_TRUE(storage::VerifySignedHead(*head, env.verifier()).ok());
  auto next = (*reopened)->Append(Event("referral/b"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->first_seq(), 6u);
}

TEST(LocalLedger, RefusesForeignFormatAndNonLedgerDirectories) {
  TempDir dir;
  auto signer = TestSigner();
  storage::LedgerOptions o;
  o.signer = signer.get();
  // A directory with other files and no format file.
  std::filesystem::create_directories(dir.Sub("notours"));
  std::ofstream(dir.Sub("notours/file.txt")) << "hello";
  o.dir = dir.Sub("notours");
  auto r1 = storage::LocalLedger::Open(o);
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(r1.status().message()).find("holds no careloop ledger"), std::string::npos);
  // Another format version.
  std::filesystem::create_directories(dir.Sub("future"));
  std::ofstream(dir.Sub("future/CARELOOP_FORMAT")) << "careloop-ledger-format 2\n";
  o.dir = dir.Sub("future");
  auto r2 = storage::LocalLedger::Open(o);
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(r2.status().message()).find("format version 2"), std::string::npos);
  // A ledger open in this process is locked against a second open.
  o.dir = dir.Sub("ledger");
  auto first = storage::LocalLedger::Open(o);
  ASSERT_TRUE(first.ok());
  auto second = storage::LocalLedger::Open(o);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
}

TEST(LocalLedger, CommitListenersHearEveryRound) {
  LocalEnv env;
  ASSERT_TRUE(env.Start().ok());
  absl::Mutex mu;
  uint64_t heard = 0;
  uint64_t id = env.local()->AddCommitListener([&](uint64_t size) {
    absl::MutexLock lock(&mu);
    heard = std::max(heard, size);
  });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(env.ledger()->Append(Event("referral/l")).ok());
  {
    absl::MutexLock lock(&mu);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return heard >= 3; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30)));
  }
  env.local()->RemoveCommitListener(id);
}

}  // namespace
}  // namespace careloop::testing
