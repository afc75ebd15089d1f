// Ed25519 keys through OpenSSL 3 EVP (one-shot EVP_DigestSign with a NULL
// digest). No hand-written crypto.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace careloop::trust {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SeedSize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;

class Ed25519PublicKey {
 public:
  // From the raw 32-byte encoding.
  static absl::StatusOr<Ed25519PublicKey> FromRaw(absl::string_view raw);
  // The same, from a process-wide cache of parsed keys (a key is a pure
  // function of its 32 bytes): verifying many envelopes under one key parses
  // it once.
  static absl::StatusOr<Ed25519PublicKey> FromRawCached(absl::string_view raw);
  // From a PEM SubjectPublicKeyInfo.
  static absl::StatusOr<Ed25519PublicKey> FromPem(absl::string_view pem);

  // True when `signature` is a valid Ed25519 signature of `message`.
  bool Verify(absl::string_view message, absl::string_view signature) const;
  const std::string& raw() const { return raw_; }
  std::string ToPem() const;

 private:
  Ed25519PublicKey(PkeyPtr key, std::string raw) : key_(std::move(key)), raw_(std::move(raw)) {}
  std::shared_ptr<EVP_PKEY> key_;
  std::string raw_;
};

class Ed25519PrivateKey {
 public:
  static absl::StatusOr<Ed25519PrivateKey> Generate();
  // From the RFC 8032 32-byte private key (the seed).
  static absl::StatusOr<Ed25519PrivateKey> FromSeed(absl::string_view seed);
  // From a PEM PKCS#8 private key.
  static absl::StatusOr<Ed25519PrivateKey> FromPem(absl::string_view pem);

  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  const Ed25519PublicKey& public_key() const { return public_key_; }
  std::string ToPem() const;

 private:
  Ed25519PrivateKey(PkeyPtr key, Ed25519PublicKey pub)
      : key_(std::move(key)), public_key_(std::move(pub)) {}
  std::shared_ptr<EVP_PKEY> key_;
  Ed25519PublicKey public_key_;
};

// Reads a PEM private key file; refuses files readable by group or others.
absl::StatusOr<Ed25519PrivateKey> LoadPrivateKeyFile(const std::string& path);
// Writes `key` as PEM with mode 0600, failing if the file exists.
absl::Status WritePrivateKeyFile(const std::string& path, const Ed25519PrivateKey& key);
// Loads the key at `path`, or generates one there when the file does not
// exist. `*generated` tells which happened.
absl::StatusOr<Ed25519PrivateKey> LoadOrGeneratePrivateKeyFile(const std::string& path,
                                                               bool* generated);

}  // namespace careloop::trust
