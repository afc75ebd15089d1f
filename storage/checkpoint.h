// Signed tree heads in the C2SP signed-note checkpoint format, so that outside
// witnesses can verify and cosign them:
//
//   <origin>\n<tree size>\n<base64 root>\n<extension lines>\n\n— <key name> <base64(key id ||
//   sig)>\n
//
// careloop's origin is "<hub name>/<log id>": a restore starts a new log id and
// so a new origin, which monitors report instead of mistaking it for history
// rewritten. The key name is the hub name, so the verifier key (vkey) stays the
// same across restores. One extension line carries the head's time:
// "time <unix nanoseconds>".
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/sha256.h"

namespace careloop::storage {

// The hub's log key, as storage needs it. services/trust implements it with
// OpenSSL; storage depends on no service code.
class HeadSigner {
 public:
  virtual ~HeadSigner() = default;
  virtual const std::string& key_name() const = 0;
  // Raw 32-byte Ed25519 public key.
  virtual const std::string& public_key() const = 0;
  virtual absl::StatusOr<std::string> Sign(absl::string_view message) const = 0;
};

// Checks signatures of one named key.
class NoteVerifier {
 public:
  virtual ~NoteVerifier() = default;
  virtual const std::string& key_name() const = 0;
  virtual uint32_t key_id() const = 0;
  virtual bool Verify(absl::string_view message, absl::string_view signature) const = 0;
};

// The signed-note key id of an Ed25519 key:
// the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key), big-endian.
uint32_t Ed25519KeyId(absl::string_view key_name, absl::string_view public_key);
// "<name>+<key id hex>+<base64(0x01 || public key)>", the vkey format.
std::string Ed25519VerifierKey(absl::string_view key_name, absl::string_view public_key);
struct ParsedVerifierKey {
  std::string key_name;
  uint32_t key_id = 0;
  std::string public_key;  // raw 32 bytes
};
absl::StatusOr<ParsedVerifierKey> ParseVerifierKey(absl::string_view vkey);

struct Checkpoint {
  std::string origin;
  uint64_t tree_size = 0;
  Hash root{};
  int64_t time_unix_nanos = 0;
};

std::string FormatCheckpointBody(const Checkpoint& cp);
absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body);

// Body + blank line + the signature line.
absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& cp, const HeadSigner& signer);

// Parses a signed note, requires a valid signature by `verifier`'s key and
// returns the checkpoint. Signatures by other keys are ignored (cosignatures).
absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note, const NoteVerifier& verifier);

std::string OriginFor(absl::string_view hub_name, absl::string_view log_id);
// The log id part of an origin made by OriginFor ("" when there is none).
std::string LogIdOfOrigin(absl::string_view origin);

}  // namespace careloop::storage
