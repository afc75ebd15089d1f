// Small secrets the edge must read back (TOTP seeds) sealed under its
// key-encryption key: AES-256-GCM with a key derived from the KEK for one
// purpose, a fresh 12-byte nonce, and the record the secret belongs to as
// associated data (a sealed value copied to another record does not open).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace careloop::edge {

class Sealer {
 public:
  // `kek`: the edge's key-encryption key; `purpose` separates the keys
  // derived for different uses.
  Sealer(absl::string_view kek, absl::string_view purpose);

  // nonce || ciphertext || tag.
  std::string Seal(absl::string_view plaintext, absl::string_view bound_to) const;
  // PERMISSION_DENIED when the value was not sealed by this key for
  // `bound_to` or was altered.
  absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view bound_to) const;

 private:
  std::string key_;
};

}  // namespace careloop::edge
