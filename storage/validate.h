// Input checks for appends: every limit is configurable and documented in
// docs/API.md. A request that fails here is refused before it is queued.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "careloop/v1/ledger.pb.h"

namespace careloop::storage {

struct LedgerLimits {
  size_t max_payload_bytes = 1 << 20;  // one event's payload
  size_t max_batch_events = 1000;      // events in one append
  size_t max_batch_bytes = 8 << 20;    // payloads + names of one append
  size_t max_preconditions = 256;
  size_t max_cursor_updates = 64;
  size_t max_agencies_per_event = 64;
  size_t max_idempotency_key_bytes = 256;
  uint32_t max_read_limit = 1000;  // events in one read page
  // Bytes of events in one read page (payloads included; a page holds at
  // least one event). Below a gRPC client's default 4 MiB receive limit.
  size_t max_read_bytes = 3 << 20;
};

// Streams: a lower-case first segment, then '/'-separated segments of
// [A-Za-z0-9._:@-]; at most 256 bytes. Cursor names follow the same rule.
absl::Status ValidateStreamName(absl::string_view name, absl::string_view what = "stream");
// Agency ids: [a-z0-9] then [a-z0-9.-], at most 128 bytes.
absl::Status ValidateAgencyId(absl::string_view id);
// One segment of a stream name (a message id, a key id, a user id):
// [A-Za-z0-9._:@-], 1 to 128 bytes.
absl::Status ValidateStreamSegment(absl::string_view value, absl::string_view what);
// Subject ids and event types: [A-Za-z0-9._:-], at most 128 bytes.
absl::Status ValidateToken(absl::string_view value, absl::string_view what);

// Checks an append against the limits and the rules above. The message names
// the first problem and its position (event index, precondition index).
absl::Status ValidateAppend(const v1::AppendRequest& req, const LedgerLimits& limits);

}  // namespace careloop::storage
