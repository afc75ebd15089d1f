#include "storage/projection.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"

namespace careloop::storage {
ProjectionRunner::ProjectionRunner(Ledger* ledger, Projection* projection, Options options)
    : ledger_(ledger),
      projection_(projection),
      options_(options),
      payload_wanted_(projection->PayloadsWanted()) {}

ProjectionRunner::~ProjectionRunner() { Stop(); }

absl::Status ProjectionRunner::Start() {
  ASSIGN_OR_RETURN(uint64_t applied, projection_->AppliedSeq());
  applied_.store(applied);
  {
    absl::MutexLock lock(&mu_);
    applied_locked_ = applied;
  }
  thread_ = std::thread(&ProjectionRunner::Run, this);
  return absl::OkStatus();
}

void ProjectionRunner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (tail_) tail_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status ProjectionRunner::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::Status ProjectionRunner::WaitFor(uint64_t min_seq, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, min_seq]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return applied_locked_ >= min_seq || !status_.ok() || stopping_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("the projection has not applied seq ", min_seq,
                                                    " (it is at ", applied_locked_, ")"));
  }
  if (applied_locked_ >= min_seq) return absl::OkStatus();
  if (!status_.ok()) return status_;
  return absl::UnavailableError("the projection is stopping");
}

absl::Status ProjectionRunner::ReadWantedPayloads(std::vector<v1::Event>* batch) {
  for (v1::Event& e : *batch) {
    if (!payload_wanted_(e.header())) continue;
    v1::ReadRequest req;
    req.set_from_seq(e.header().seq());
    req.set_limit(1);
    req.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse one, ledger_->Read(req));
    if (one.events().empty() || one.events(0).header().seq() != e.header().seq()) {
      return absl::UnavailableError(
          absl::StrCat("the payload of seq ", e.header().seq(), " could not be read"));
    }
    e = std::move(*one.mutable_events(0));
  }
  return absl::OkStatus();
}

void ProjectionRunner::Run() {
  while (true) {
    const bool some_payloads = options_.include_payloads && payload_wanted_ != nullptr;
    std::unique_ptr<TailStream> tail =
        ledger_->Tail(applied_.load() + 1, options_.include_payloads && !some_payloads);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      tail_ = std::move(tail);
    }
    TailStream* t = nullptr;
    {
      absl::MutexLock lock(&mu_);
      t = tail_.get();
    }
    absl::Status lost;
    while (lost.ok()) {
      absl::StatusOr<std::vector<v1::Event>> batch = t->Next(options_.wake_timeout);
      if (!batch.ok()) {
        lost = batch.status();
        break;
      }
      if (batch->empty()) continue;
      if (some_payloads) {
        lost = ReadWantedPayloads(&*batch);
        if (!lost.ok()) break;
      }
      uint64_t expect = applied_.load() + 1;
      if (batch->front().header().seq() != expect) {
        absl::MutexLock lock(&mu_);
        status_ = absl::DataLossError(absl::StrCat("projection expected seq ", expect, " but got ",
                                                   batch->front().header().seq()));
        return;
      }
      if (absl::Status s = projection_->Apply(*batch); !s.ok()) {
        log::Error("projection.apply_failed",
                   {{"seq", expect}, {"cause", std::string(s.message())}});
        absl::MutexLock lock(&mu_);
        status_ = s;
        return;
      }
      uint64_t last = batch->back().header().seq();
      applied_.store(last);
      absl::MutexLock lock(&mu_);
      applied_locked_ = last;
    }
    absl::MutexLock lock(&mu_);
    tail_.reset();
    if (stopping_) return;
    if (absl::IsDataLoss(lost)) {
      // Damage in the ledger is not a lost connection: retrying reads the
      // same bytes. The projection stops, and every wait for it fails.
      log::Error("projection.data_loss",
                 {{"applied_seq", applied_.load()}, {"cause", std::string(lost.message())}});
      status_ = lost;
      return;
    }
    // The tail was lost (a remote ledger restarting): back off, then resume
    // from the applied seq. Stop() wakes this wait at once.
    log::Warn("projection.tail_lost",
              {{"applied_seq", applied_.load()}, {"cause", std::string(lost.message())}});
    auto stop = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.retry_backoff)) return;
  }
}

}  // namespace careloop::storage
