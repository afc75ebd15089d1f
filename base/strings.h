// Small helpers over strings and lists of strings.
#pragma once

#include <algorithm>

#include "absl/strings/string_view.h"

namespace careloop {

// Whether `list` (any range of string-like values) holds `v`.
template <typename List>
bool Contains(const List& list, absl::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

}  // namespace careloop
