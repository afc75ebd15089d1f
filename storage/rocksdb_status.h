// The one place a rocksdb::Status becomes an absl::Status.
#pragma once

#include <rocksdb/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace careloop::storage {

// Corruption -> DATA_LOSS, no space -> RESOURCE_EXHAUSTED, a held lock ->
// FAILED_PRECONDITION (another careloopd on the data dir), other I/O errors
// -> UNAVAILABLE; `context` says what was being done.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context);

}  // namespace careloop::storage
