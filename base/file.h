// Whole-file reads for configuration, keys and certificates.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace careloop {

// The bytes of the file at `path`; NOT_FOUND naming the path when it cannot
// be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Replaces the file at `path` with `bytes` so that a crash leaves the old or
// the new file, never a torn one: a temporary file beside it with `mode`,
// fsync, rename, fsync of the directory; every step's failure is returned.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes,
                                 unsigned int mode);

// The text of an errno value, thread-safe (std::strerror is not).
std::string ErrnoMessage(int err);

}  // namespace careloop
