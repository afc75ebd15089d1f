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

}  // namespace careloop::storage
