// Building an append: events, preconditions, and the errors for events that
// do not read back. Every service's plans are made of these, so an event and
// a precondition are put together the same way everywhere.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "careloop/v1/audit.pb.h"
#include "careloop/v1/ledger.pb.h"
#include "google/protobuf/message.h"

namespace careloop::trust {

// Adds one event to `req` and returns it (for its agencies and the rest).
v1::EventInput* AddEvent(v1::AppendRequest* req, std::string stream, absl::string_view type,
                         absl::string_view subject = {}, std::string payload = {});

// The append lands only if `stream` is at `version` then; version 0 means the
// stream must not exist yet.
void Expect(v1::AppendRequest* req, std::string stream, uint64_t version);

// The record of one read of people's records by `caller` (an agency, or
// compliance), in stream audit/<caller>: which RPC, with which request.
// Whichever service answers the read appends it; the hub's own internal
// decisions are not reads and are not recorded.
// `actor` is the staff member the caller acted for ("" when not named).
v1::AppendRequest ReadRecord(absl::string_view caller, absl::string_view actor,
                             absl::string_view rpc, const google::protobuf::Message& request);

// The record of one read of a person's records (RecordAccessed, in
// audit/<agency>): the person's hub id as the header's subject and the
// reading agency as its agency, so the person's trail and the agency's
// index find it; who read what in the payload only.
v1::AppendRequest AccessRecord(const v1::RecordAccessed& read);

// DATA_LOSS for an event in the ledger that does not hold what its type says
// (named by seq and type, never by content).
absl::Status Corrupt(const v1::Event& e, absl::string_view what);

}  // namespace careloop::trust
