// Ed25519 private keys encrypted at rest: PEM PKCS#8 "ENCRYPTED PRIVATE KEY"
// (PBES2: AES-256-CBC under a PBKDF2-HMAC-SHA256 key, OpenSSL 3's defaults),
// through OpenSSL; no hand-written crypto.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/trust/ed25519.h"

namespace careloop::trust {

// `key` encrypted under `passphrase`, with a fresh salt and IV each call.
std::string EncryptPrivateKey(const Ed25519PrivateKey& key, absl::string_view passphrase);

// The key in an encrypted PEM PKCS#8. INVALID_ARGUMENT for anything else (a
// plain PEM included); PERMISSION_DENIED when it does not decrypt under
// `passphrase` (another passphrase, or damaged bytes).
absl::StatusOr<Ed25519PrivateKey> DecryptPrivateKey(absl::string_view pem,
                                                    absl::string_view passphrase);

}  // namespace careloop::trust
