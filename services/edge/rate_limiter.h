// Token buckets per key (a client address, a login name): `burst` requests
// at once, refilled at `per_minute`. Bounded in memory: past `max_keys`
// the longest-idle keys are forgotten (a forgotten key starts full).
#pragma once

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace careloop::edge {

class RateLimiter {
 public:
  RateLimiter(Clock* clock, double per_minute, double burst, size_t max_keys = 10000);

  // Takes a token for `key`; false when its bucket is empty.
  bool Allow(absl::string_view key);

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
  };
  void ForgetIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* clock_;
  const double per_second_;
  const double burst_;
  const size_t max_keys_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace careloop::edge
