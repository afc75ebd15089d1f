// Process-wide runtime settings for release binaries (careloopd, benchmarks).
#pragma once

#include "absl/synchronization/mutex.h"

namespace careloop {

// Debian's Abseil is built with mutex deadlock detection on: every lock
// acquisition records lock-order edges under one global lock. Tests keep it
// (it names lock-order cycles); release builds turn it off at startup.
inline void ApplyReleaseRuntimeDefaults() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace careloop
