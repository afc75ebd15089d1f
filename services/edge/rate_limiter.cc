#include "services/edge/rate_limiter.h"

#include <algorithm>
#include <vector>

namespace careloop::edge {

RateLimiter::RateLimiter(Clock* clock, double per_minute, double burst, size_t max_keys)
    : clock_(clock), per_second_(per_minute / 60.0), burst_(burst), max_keys_(max_keys) {}

bool RateLimiter::Allow(absl::string_view key) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) ForgetIdle();
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.updated));
  b.tokens = std::min(burst_, b.tokens + elapsed * per_second_);
  b.updated = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::ForgetIdle() {
  // Forget the idlest half: amortized O(1) per new key.
  std::vector<absl::Time> times;
  times.reserve(buckets_.size());
  for (const auto& [key, b] : buckets_) times.push_back(b.updated);
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  const absl::Time cut = *mid;
  absl::erase_if(buckets_, [cut](const auto& kv) { return kv.second.updated <= cut; });
}

}  // namespace careloop::edge
