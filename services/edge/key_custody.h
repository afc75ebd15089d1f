// Custody of the signing keys of the agencies an edge serves (DESIGN.md,
// "The agency edge"). Each agency's Ed25519 key is kept as encrypted PKCS#8
// (PBES2, AES-256-CBC) under the edge's key-encryption key, one file per
// agency in a directory only the edge's user can open. The key-encryption
// key never touches the disk through this class: it comes from config or
// the environment. Whoever holds it and the directory can sign as every
// agency kept here (docs/SECURITY.md, "Custody of keys").
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/trust/ed25519.h"

namespace careloop::edge {

// The least key-encryption key accepted, in bytes: it must be random (for
// instance `openssl rand -base64 32`), not a password someone chose.
inline constexpr size_t kMinKekBytes = 32;

// The environment variable a key-encryption key may come from.
inline constexpr char kKekEnvironmentVariable[] = "CARELOOP_EDGE_KEK";

class KeyCustody {
 public:
  // Opens (creating, mode 0700) the key directory `dir`. Refuses a directory
  // that group or others can open, and a key-encryption key that is short.
  static absl::StatusOr<KeyCustody> Open(std::string dir, std::string kek);

  // The agency's signing key. NOT_FOUND when the edge holds none for it;
  // PERMISSION_DENIED when the file does not decrypt under this edge's
  // key-encryption key (another key, or a damaged file) or is readable by
  // group or others.
  absl::StatusOr<trust::Ed25519PrivateKey> Load(absl::string_view agency) const;

  // Generates a key for an agency the edge holds none for (ALREADY_EXISTS
  // otherwise) and stores it, durably, before returning it.
  absl::StatusOr<trust::Ed25519PrivateKey> Create(absl::string_view agency);

  // Stores a key the agency brings (an import), replacing none: ALREADY_EXISTS
  // when the edge holds one.
  absl::Status Import(absl::string_view agency, const trust::Ed25519PrivateKey& key);

  // The agencies whose keys are held, sorted.
  absl::StatusOr<std::vector<std::string>> Agencies() const;

  const std::string& dir() const { return dir_; }

 private:
  KeyCustody(std::string dir, std::string kek) : dir_(std::move(dir)), kek_(std::move(kek)) {}
  absl::StatusOr<std::string> PathOf(absl::string_view agency) const;

  std::string dir_;
  std::string kek_;
};

// The key-encryption key from the environment (CARELOOP_EDGE_KEK), or
// NOT_FOUND naming the variable. Call at startup, before other threads run.
absl::StatusOr<std::string> KekFromEnvironment();

}  // namespace careloop::edge
