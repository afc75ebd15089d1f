// Offline verification of a receipt with only the hub's public key: the
// signed head's signature, the head's fields against its checkpoint, and the
// inclusion proof of the event header in that head.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "careloop/v1/ledger.pb.h"
#include "storage/checkpoint.h"

namespace careloop::storage {

// Returns the verified header. When `payload` is given, its SHA-256 must be the
// header's payload hash (a sender checks its own envelope bytes this way).
absl::StatusOr<v1::EventHeader> VerifyReceipt(const v1::Receipt& receipt, const NoteVerifier& key,
                                              const std::optional<std::string>& payload);

// Checks a signed head: signature, and that its fields equal the checkpoint's.
absl::StatusOr<Checkpoint> VerifySignedHead(const v1::SignedHead& head, const NoteVerifier& key);

struct VerifiedConsistency {
  Checkpoint head1, head2;
};
// A consistency proof between two signed heads: both heads verify, they are
// of one log (the same log id: a proof across a restore is refused, naming
// both), the proof's own sizes are the heads' signed sizes, and the proof
// shows that head2's tree extends head1's.
absl::StatusOr<VerifiedConsistency> VerifyConsistencyProof(const v1::SignedHead& head1,
                                                           const v1::SignedHead& head2,
                                                           const v1::ConsistencyProof& proof,
                                                           const NoteVerifier& key);

}  // namespace careloop::storage
