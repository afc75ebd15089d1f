// What every benchmark's main shares: ending a run that cannot go on, and a
// main that reports what escapes instead of terminating without a word.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace careloop::bench {

// Ends a run that cannot go on, from any thread (std::exit is not
// thread-safe); what was printed is flushed first.
[[noreturn]] inline void Die() {
  std::fflush(nullptr);
  std::_Exit(1);
}

// Runs a benchmark's body; an exception that escapes it is printed and the
// run fails (exit 1).
inline int RunMain(int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "benchmark failed with an unknown exception\n");
    return 1;
  }
}

}  // namespace careloop::bench
