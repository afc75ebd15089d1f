// Crash safety, like a power cut. careloopd runs as a real process with the
// power-loss file system (unsynced bytes live only in its memory, so kill -9
// loses them as a power cut would). Many clients append while every
// acknowledged commit is recorded outside the hub; the hub is kill -9ed at
// random moments and restarted. After every restart: every acknowledged event
// is present exactly once at its seq, seqs are gap-free, idempotent retries
// return the original commit, and at the end the tree and every head verify.
//
// The negative control runs the same harness with fsync turned off; the
// checker must then find acknowledged events missing.
//
// CARELOOP_CRASH_CYCLES (default 20) and CARELOOP_CRASH_SEED replay or extend.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/ledger/remote_ledger.h"
#include "storage/verify.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

struct Acked {
  uint64_t first_seq = 0;
  int events = 0;
};

class CrashHarness {
 public:
  CrashHarness(bool no_sync, uint64_t seed) : no_sync_(no_sync), rng_(seed) {}

  std::vector<std::string> Args() {
    std::vector<std::string> a = {"--services=ledger",      "--data-dir", dir_.path(),
                                  "--unsafe-power-loss-fs", "--hub-name", "careloop.crash"};
    if (no_sync_) a.push_back("--unsafe-no-sync");
    return a;
  }

  // One cycle: start, load, kill -9. Returns the problems the check found
  // after the restart that follows (checked at the start of the next Start).
  absl::Status RunCycle(int cycle, std::vector<std::string>* problems) {
    std::string address;
    absl::Time t0 = absl::Now();
    std::string hub_address;
    auto hub = StartCareloopd(Args(), &hub_address, &address);
    if (!hub.ok()) return hub.status();
    restart_seconds_ = std::max(restart_seconds_, absl::ToDoubleSeconds(absl::Now() - t0));
    auto ledger = std::make_unique<ledger::RemoteLedger>(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()), absl::Seconds(20));
    Check(ledger.get(), problems);
    RetryUncertain(ledger.get(), problems);

    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < kClients; ++t) {
      clients.emplace_back([&, t] {
        for (int n = 0; !stop.load(); ++n) {
          std::string key = absl::StrCat("c", cycle, "-t", t, "-", n);
          v1::AppendRequest r;
          int events = 1 + (n % 3 == 0 ? 1 : 0);
          for (int k = 0; k < events; ++k) {
            v1::EventInput* e = r.add_events();
            e->set_stream(absl::StrCat("crash/t", t));
            e->set_type("Load");
            e->set_payload(absl::StrCat(key, "#", k));
          }
          r.set_idempotency_key(key);
          {
            absl::MutexLock lock(&mu_);
            uncertain_[key] = r;
          }
          auto c = ledger->Append(r);
          absl::MutexLock lock(&mu_);
          if (c.ok()) {
            uncertain_.erase(key);
            acked_[key] = Acked{c->first_seq(), events};
          } else if (c.status().code() == absl::StatusCode::kUnavailable ||
                     c.status().code() == absl::StatusCode::kDeadlineExceeded) {
            return;  // the hub is gone; the outcome of `key` is unknown
          } else {
            problems->push_back(absl::StrCat("append ", key, " failed: ", c.status().ToString()));
            uncertain_.erase(key);
            return;
          }
        }
      });
    }
    // Let the load run for a random while, then cut the power.
    std::uniform_int_distribution<int> ms(30, 250);
    absl::Time until = absl::Now() + absl::Milliseconds(ms(rng_));
    while (absl::Now() < until) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](bool*) { return false; }, static_cast<bool*>(nullptr)),
                           until - absl::Now());
    }
    (*hub)->Signal(SIGKILL);
    auto code = (*hub)->Wait(absl::Seconds(30));
    stop.store(true);
    for (auto& c : clients) c.join();
    if (!code.ok()) return code.status();
    return absl::OkStatus();
  }

  // Every acked event exactly once at its seq; gap-free seqs; no duplicates.
  void Check(storage::Ledger* ledger, std::vector<std::string>* problems) {
    std::map<std::string, uint64_t> seen;  // payload -> seq
    uint64_t expect = 1;
    while (true) {
      v1::ReadRequest r;
      r.set_from_seq(expect);
      r.set_limit(1000);
      r.set_include_payloads(true);
      auto page = ledger->Read(r);
      if (!page.ok()) {
        problems->push_back(absl::StrCat("read failed: ", page.status().ToString()));
        return;
      }
      for (const auto& e : page->events()) {
        if (e.header().seq() != expect) {
          problems->push_back(
              absl::StrCat("gap: expected seq ", expect, " got ", e.header().seq()));
          return;
        }
        if (!seen.emplace(e.payload(), expect).second) {
          problems->push_back(absl::StrCat("duplicate event ", e.payload(), " at seq ", expect));
        }
        ++expect;
      }
      if (page->events_size() == 0) break;
    }
    events_ = expect - 1;
    absl::MutexLock lock(&mu_);
    for (const auto& [key, a] : acked_) {
      for (int k = 0; k < a.events; ++k) {
        auto it = seen.find(absl::StrCat(key, "#", k));
        if (it == seen.end()) {
          problems->push_back(absl::StrCat("acknowledged event ", key, "#", k, " (seq ",
                                           a.first_seq + k, ") is lost"));
        } else if (it->second != a.first_seq + k) {
          problems->push_back(absl::StrCat("acknowledged event ", key, "#", k, " moved from seq ",
                                           a.first_seq + k, " to ", it->second));
        }
      }
    }
  }

  // Appends whose answer was lost in the crash are retried with their key:
  // each lands exactly once (or turns out to have landed already).
  void RetryUncertain(storage::Ledger* ledger, std::vector<std::string>* problems) {
    std::map<std::string, v1::AppendRequest> pending;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(uncertain_);
    }
    for (auto& [key, req] : pending) {
      auto c = ledger->Append(req);
      if (!c.ok()) {
        problems->push_back(absl::StrCat("retry of ", key, " failed: ", c.status().ToString()));
        continue;
      }
      absl::MutexLock lock(&mu_);
      acked_[key] = Acked{c->first_seq(), req.events_size()};
    }
    // A sample of acknowledged appends, retried: the original commit comes back.
    std::vector<std::pair<std::string, Acked>> sample;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& kv : acked_) {
        if (sample.size() >= 20) break;
        if (rng_() % 4 == 0) sample.push_back(kv);
      }
    }
    for (const auto& [key, a] : sample) {
      v1::AppendRequest r;
      for (int k = 0; k < a.events; ++k) {
        v1::EventInput* e = r.add_events();
        e->set_stream(absl::StrCat(
            "crash/t", key.substr(key.find("-t") + 2, key.rfind('-') - key.find("-t") - 2)));
        e->set_type("Load");
        e->set_payload(absl::StrCat(key, "#", k));
      }
      r.set_idempotency_key(key);
      auto c = ledger->Append(r);
      if (!c.ok() || !c->deduplicated() || c->first_seq() != a.first_seq) {
        problems->push_back(
            absl::StrCat("idempotent retry of ", key, " did not return the original commit: ",
                         c.ok() ? absl::StrCat("seq ", c->first_seq()) : c.status().ToString()));
      }
    }
  }

  absl::Status FinalCheck(std::vector<std::string>* problems) {
    std::string address;
    std::string hub_address;
    auto hub = StartCareloopd(Args(), &hub_address, &address);
    if (!hub.ok()) return hub.status();
    {
      ledger::RemoteLedger ledger(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()),
                                  absl::Seconds(20));
      Check(&ledger, problems);
      RetryUncertain(&ledger, problems);
      Check(&ledger, problems);
    }
    (*hub)->Signal(SIGTERM);
    auto code = (*hub)->Wait(absl::Seconds(60));
    if (!code.ok() || *code != 0) return absl::InternalError("careloopd did not stop cleanly");
    auto key = trust::Ed25519NoteVerifier::FromFile(dir_.Sub("keys/hub-log.vkey"));
    if (!key.ok()) return key.status();
    auto report = storage::VerifyLedgerDir(dir_.Sub("ledger"), key->get(), nullptr);
    if (!report.ok()) return report.status();
    if (!report->ok) {
      problems->push_back(
          absl::StrCat("verify: first bad seq ", report->first_bad_seq, ": ", report->problem));
    }
    if (report->events != events_) problems->push_back("verify saw a different number of events");
    return absl::OkStatus();
  }

  size_t acked() {
    absl::MutexLock lock(&mu_);
    return acked_.size();
  }
  uint64_t events() const { return events_; }
  double restart_seconds() const { return restart_seconds_; }

 private:
  static constexpr int kClients = 8;
  bool no_sync_;
  std::mt19937_64 rng_;
  TempDir dir_;
  absl::Mutex mu_;
  std::map<std::string, Acked> acked_;
  std::map<std::string, v1::AppendRequest> uncertain_;
  uint64_t events_ = 0;
  double restart_seconds_ = 0;
};

uint64_t Seed() {
  if (const char* s = std::getenv("CARELOOP_CRASH_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device()();
}

int Cycles() {
  if (const char* s = std::getenv("CARELOOP_CRASH_CYCLES")) return std::atoi(s);
  return 20;
}

TEST(Crash, KillNineUnderLoadLosesNothingAcknowledged) {
  const uint64_t seed = Seed();
  const int cycles = Cycles();
  SCOPED_TRACE(
      absl::StrCat("replay with CARELOOP_CRASH_SEED=", seed, " CARELOOP_CRASH_CYCLES=", cycles));
  CrashHarness harness(/*no_sync=*/false, seed);
  std::vector<std::string> problems;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    absl::Status s = harness.RunCycle(cycle, &problems);
    ASSERT_TRUE(s.ok()) << "cycle " << cycle << ": " << s;
  }
  ASSERT_TRUE(harness.FinalCheck(&problems).ok());
  for (const auto& p : problems) ADD_FAILURE() << p;
  EXPECT_GT(harness.acked(), static_cast<size_t>(cycles)) << "the load must have made progress";
  std::printf(
      "crash test: seed %llu, %d kill -9 cycles, %zu acknowledged appends, %llu events, slowest "
      "start %.2f s\n",
      static_cast<unsigned long long>(seed), cycles, harness.acked(),
      static_cast<unsigned long long>(harness.events()), harness.restart_seconds());
}

TEST(Crash, NegativeControlWithoutFsyncIsCaught) {
  const uint64_t seed = Seed();
  SCOPED_TRACE(absl::StrCat("replay with CARELOOP_CRASH_SEED=", seed));
  CrashHarness harness(/*no_sync=*/true, seed);
  std::vector<std::string> problems;
  int cycle = 0;
  // Run until the checker sees a loss (it should at the first restart).
  for (; cycle < 8 && problems.empty(); ++cycle) {
    ASSERT_TRUE(harness.RunCycle(cycle, &problems).ok());
  }
  if (problems.empty()) {
    ASSERT_TRUE(harness.FinalCheck(&problems).ok());
  }
  ASSERT_FALSE(problems.empty())
      << "with fsync off, kill -9 must lose acknowledged events and the checker must say so";
  bool lost = false;
  for (const auto& p : problems) lost |= p.find("is lost") != std::string::npos;
  EXPECT_TRUE(lost) << problems.front();
  std::printf("negative control: the checker found %zu problem(s) after %d cycle(s), e.g. %s\n",
              problems.size(), cycle, problems.front().c_str());
}

}  // namespace
}  // namespace careloop::testing
