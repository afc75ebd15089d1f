// Negative control for the thread-safety analysis (tests/CMakeLists.txt:
// thread_safety_catches_unguarded): a member guarded by a mutex, written
// without holding it. The analysis must refuse this file; if it ever stops
// refusing it, the analysis of the real sources proves nothing.
#include "absl/synchronization/mutex.h"

namespace careloop::lint_negative {

class Counter {
 public:
  void Bump() { ++count_; }  // unguarded on purpose

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

void Use() {
  Counter c;
  c.Bump();
}

}  // namespace careloop::lint_negative
