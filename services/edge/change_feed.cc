#include "services/edge/change_feed.h"

#include <algorithm>

#include "base/log.h"

namespace careloop::edge {

void ChangeFeed::Follow(const std::string& agency) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || latest_.count(agency) != 0) return;
  latest_[agency] = 0;
  threads_.emplace_back([this, agency] { Run(agency); });
}

uint64_t ChangeFeed::Latest(const std::string& agency) const {
  absl::MutexLock lock(&mu_);
  auto it = latest_.find(agency);
  return it == latest_.end() ? 0 : it->second;
}

uint64_t ChangeFeed::WaitPast(const std::string& agency, uint64_t after,
                              absl::Duration wait) const {
  absl::MutexLock lock(&mu_);
  auto past = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = latest_.find(agency);
    return stopping_ || (it != latest_.end() && it->second > after);
  };
  mu_.AwaitWithTimeout(absl::Condition(&past), wait);
  auto it = latest_.find(agency);
  return it == latest_.end() ? 0 : it->second;
}

void ChangeFeed::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [agency, stream] : streams_) stream->Cancel();
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

void ChangeFeed::Run(const std::string& agency) {
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    const absl::Status s = Pump(agency);
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    // The hub is restarting or the consumer was taken over: try again,
    // backing off; never spin.
    log::Warn("edge.feed_restart",
              {{"agency", agency}, {"code", absl::StatusCodeToString(s.code())}});
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), backoff);
    if (stopping_) return;
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

absl::Status ChangeFeed::Pump(const std::string& agency) {
  const Acting as{agency, ""};
  v1::CreateConsumerRequest create;
  create.set_consumer(kConsoleConsumer);
  if (absl::StatusOr<v1::CreateConsumerResponse> c = hub_->CreateConsumer(create, as); !c.ok()) {
    return c.status();
  }
  v1::SubscribeRequest sub;
  sub.set_consumer(kConsoleConsumer);
  absl::StatusOr<std::unique_ptr<ChangeStream>> stream = hub_->Subscribe(sub, as);
  if (!stream.ok()) return stream.status();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    streams_[agency] = stream->get();
  }
  absl::Status result;
  while (true) {
    absl::StatusOr<std::vector<v1::Notification>> batch = (*stream)->Next(absl::Seconds(1));
    if (!batch.ok()) {
      result = batch.status();
      break;
    }
    if (batch->empty()) continue;
    const uint64_t last = batch->back().seq();
    log::Debug("edge.feed", {{"agency", agency}, {"events", batch->size()}, {"last", last}});
    v1::AckRequest ack;
    ack.set_consumer(kConsoleConsumer);
    ack.set_up_to_seq(last);
    if (absl::StatusOr<v1::AckResponse> a = hub_->Ack(ack, as); !a.ok()) {
      result = a.status();
      break;
    }
    absl::MutexLock lock(&mu_);
    latest_[agency] = std::max(latest_[agency], last);
  }
  absl::MutexLock lock(&mu_);
  streams_.erase(agency);
  return result;
}

}  // namespace careloop::edge
