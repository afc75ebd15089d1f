// The OpenSSL Ed25519 implementations of storage's HeadSigner and NoteVerifier.
#pragma once

#include <memory>
#include <string>

#include "services/trust/ed25519.h"
#include "storage/checkpoint.h"

namespace careloop::trust {

class Ed25519HeadSigner final : public storage::HeadSigner {
 public:
  Ed25519HeadSigner(std::string key_name, Ed25519PrivateKey key)
      : key_name_(std::move(key_name)), key_(std::move(key)) {}
  const std::string& key_name() const override { return key_name_; }
  const std::string& public_key() const override { return key_.public_key().raw(); }
  absl::StatusOr<std::string> Sign(absl::string_view message) const override {
    return key_.Sign(message);
  }
  std::string VerifierKey() const { return storage::Ed25519VerifierKey(key_name_, public_key()); }

 private:
  std::string key_name_;
  Ed25519PrivateKey key_;
};

class Ed25519NoteVerifier final : public storage::NoteVerifier {
 public:
  // From a vkey string "<name>+<id>+<base64 key>".
  static absl::StatusOr<std::unique_ptr<Ed25519NoteVerifier>> FromVerifierKey(
      absl::string_view vkey);
  // Reads a vkey file.
  static absl::StatusOr<std::unique_ptr<Ed25519NoteVerifier>> FromFile(const std::string& path);

  const std::string& key_name() const override { return key_name_; }
  uint32_t key_id() const override { return key_id_; }
  bool Verify(absl::string_view message, absl::string_view signature) const override {
    return key_.Verify(message, signature);
  }

 private:
  Ed25519NoteVerifier(std::string name, uint32_t id, Ed25519PublicKey key)
      : key_name_(std::move(name)), key_id_(id), key_(std::move(key)) {}
  std::string key_name_;
  uint32_t key_id_;
  Ed25519PublicKey key_;
};

}  // namespace careloop::trust
