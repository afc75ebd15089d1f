// Export bundles, offline: JSON Lines in and out, and a complete check with
// only the hub's verifier key — no hub, no network. The first problem found is
// named by its line in the file (1-based) and, for an event, its seq.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "careloop/v1/audit.pb.h"
#include "storage/checkpoint.h"

namespace careloop::audit {

std::string BundleToJsonLines(const v1::ExportResponse& bundle);
// Each line must parse; the error names the line.
absl::StatusOr<v1::ExportResponse> ParseBundle(absl::string_view jsonl);

struct BundleReport {
  bool ok = false;
  size_t bad_line = 0;     // 1-based; 0 when ok
  uint64_t bad_seq = 0;    // the event at that line, if any
  std::string problem;     // for people
  uint64_t events = 0;     // events checked
  uint64_t envelopes = 0;  // envelope signatures checked
  uint64_t tree_size = 0;  // of the bundle's head
  std::string query;       // what the export was for
};

// Checks, in order: the head's signature (by `key`), every event's inclusion
// in that head and its payload against the digest in its header, that the
// export event (itself in the log) lists exactly the events of the bundle in
// order (nothing dropped, inserted or reordered), and every envelope's
// signature with the directory keys in the bundle, valid at its signing time.
BundleReport VerifyBundle(const v1::ExportResponse& bundle, const storage::NoteVerifier& key);

// ---- Monitoring ----
//
// What a monitor keeps between runs: the last head it accepted.
struct MonitorState {
  std::string log_id;
  uint64_t tree_size = 0;
  std::string root;        // 32 bytes
  std::string checkpoint;  // the signed note, as evidence
};
struct MonitorResult {
  bool ok = false;
  std::string problem;  // for people: names both heads
  MonitorState next;    // what to keep when ok
};
// Checks a new head against the last one: the signature (a head signed by
// another key is forged), the log id (a different log), the size (smaller:
// rolled back), the root at the same size (forked), and for a larger size the
// consistency proof from the last size (rewritten history fails it).
MonitorResult CheckHead(const std::optional<MonitorState>& last, const v1::SignedHead& head,
                        const v1::ConsistencyProof& proof, const storage::NoteVerifier& key);
std::string MonitorStateToText(const MonitorState& s);
absl::StatusOr<MonitorState> MonitorStateFromText(absl::string_view text);

// Ledger event types whose payload is a signed envelope, exactly as received.
bool CarriesEnvelope(absl::string_view type);

}  // namespace careloop::audit
