// Whole-file reads for configuration, keys and certificates.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace careloop {

// The bytes of the file at `path`; NOT_FOUND naming the path when it cannot
// be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The text of an errno value, thread-safe (std::strerror is not).
std::string ErrnoMessage(int err);

}  // namespace careloop
