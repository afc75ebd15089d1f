// Projections: a service's own state, built from the ledger's events.
//
// A ProjectionRunner tails the ledger from the projection's applied seq,
// applies batches in order, and lets callers wait until a seq is applied
// (WaitFor), so a read that carries the seq of the caller's own write sees it.
// A projection stores its applied seq in the same atomic write as its state,
// so after a crash it resumes exactly where its state is.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "storage/ledger.h"

namespace careloop::storage {

class Projection {
 public:
  virtual ~Projection() = default;
  // The last seq whose effects are in the projection's durable state (0: none).
  virtual absl::StatusOr<uint64_t> AppliedSeq() = 0;
  // Applies consecutive events and records the last one's seq, atomically.
  virtual absl::Status Apply(const std::vector<v1::Event>& events) = 0;
  // The events whose payloads Apply needs; null (the default) for all. A
  // projection that folds a few streams names them, and its runner tails
  // headers only and reads just those payloads.
  using PayloadFilter = std::function<bool(const v1::EventHeader&)>;
  virtual PayloadFilter PayloadsWanted() const { return nullptr; }
};

class ProjectionRunner {
 public:
  struct Options {
    bool include_payloads = true;  // as the projection's PayloadsWanted() says
    absl::Duration wake_timeout = absl::Milliseconds(500);   // bound on one Tail wait
    absl::Duration retry_backoff = absl::Milliseconds(200);  // after a lost tail (remote)
  };
  ProjectionRunner(Ledger* ledger, Projection* projection)
      : ProjectionRunner(ledger, projection, Options()) {}
  ProjectionRunner(Ledger* ledger, Projection* projection, Options options);
  ~ProjectionRunner();

  // Reads the applied seq and starts catching up in the background.
  absl::Status Start();
  void Stop();
  // Waits until events up to `min_seq` are applied. Returns the projection's
  // error if it stopped on one, DEADLINE_EXCEEDED on timeout.
  absl::Status WaitFor(uint64_t min_seq, absl::Duration timeout);
  uint64_t applied() const { return applied_.load(); }
  absl::Status status() const;

 private:
  void Run();
  absl::Status ReadWantedPayloads(std::vector<v1::Event>* batch);

  Ledger* ledger_;
  Projection* projection_;
  Options options_;
  const Projection::PayloadFilter payload_wanted_;  // null: every payload
  std::thread thread_;
  std::atomic<uint64_t> applied_{0};
  mutable absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t applied_locked_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<TailStream> tail_ ABSL_GUARDED_BY(mu_);
};

}  // namespace careloop::storage
