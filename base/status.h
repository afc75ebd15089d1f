// Status helpers used everywhere inside careloop.
//
// Operating errors (bad input, full disk, a peer gone) travel as absl::Status.
// Programmer errors (a broken invariant) stop the process via CARELOOP_CHECK,
// which stays on in release builds: continuing with a broken ledger invariant
// would be worse than stopping.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CARELOOP_CONCAT_INNER(a, b) a##b
#define CARELOOP_CONCAT(a, b) CARELOOP_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` yields a non-OK status.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status careloop_status_ = (expr);            \
    if (!careloop_status_.ok()) return careloop_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a StatusOr or returns
// its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  CARELOOP_ASSIGN_OR_RETURN_IMPL(CARELOOP_CONCAT(careloop_statusor_, __LINE__), lhs, expr)
// `lhs` is a declaration ("auto x") and `tmp` a name: neither can be
// parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CARELOOP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

// An invariant check that stays on in every build type.
#define CARELOOP_CHECK(cond)                                                                  \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "careloop: invariant violated at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                                    \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
