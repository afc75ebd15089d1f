#include "services/trust/encrypted_key.h"

#include <openssl/crypto.h>
#include <openssl/pem.h>

#include <cstring>
#include <memory>

#include "base/status.h"

namespace careloop::trust {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Plain PEM of a key, wiped when it goes out of scope.
class WipedString {
 public:
  explicit WipedString(std::string s) : s_(std::move(s)) {}
  ~WipedString() { OPENSSL_cleanse(s_.data(), s_.size()); }
  WipedString(const WipedString&) = delete;
  WipedString& operator=(const WipedString&) = delete;
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

std::string BioBytes(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

PkeyPtr ReadPem(absl::string_view pem, pem_password_cb* cb, void* arg) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  CARELOOP_CHECK(bio != nullptr);
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, cb, arg));
}

int GivePassphrase(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* pass = static_cast<const absl::string_view*>(u);
  if (pass->size() > static_cast<size_t>(size)) return -1;
  std::memcpy(buf, pass->data(), pass->size());
  return static_cast<int>(pass->size());
}

}  // namespace

std::string EncryptPrivateKey(const Ed25519PrivateKey& key, absl::string_view passphrase) {
  const WipedString plain(key.ToPem());
  PkeyPtr pkey = ReadPem(plain.str(), nullptr, nullptr);
  CARELOOP_CHECK(pkey != nullptr);  // our own PEM
  BioPtr out(BIO_new(BIO_s_mem()));
  CARELOOP_CHECK(out && PEM_write_bio_PKCS8PrivateKey(
                            out.get(), pkey.get(), EVP_aes_256_cbc(), passphrase.data(),
                            static_cast<int>(passphrase.size()), nullptr, nullptr) == 1);
  return BioBytes(out.get());
}

absl::StatusOr<Ed25519PrivateKey> DecryptPrivateKey(absl::string_view pem,
                                                    absl::string_view passphrase) {
  if (pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") == absl::string_view::npos) {
    return absl::InvalidArgumentError("not an encrypted PEM PKCS#8 private key");
  }
  PkeyPtr pkey = ReadPem(pem, GivePassphrase, &passphrase);
  if (pkey == nullptr) {
    return absl::PermissionDeniedError(
        "the encrypted private key does not decrypt: another key-encryption key, or a damaged "
        "file");
  }
  BioPtr out(BIO_new(BIO_s_secmem()));  // wiped when freed
  CARELOOP_CHECK(out && PEM_write_bio_PrivateKey(out.get(), pkey.get(), nullptr, nullptr, 0,
                                                 nullptr, nullptr) == 1);
  const WipedString plain(BioBytes(out.get()));
  return Ed25519PrivateKey::FromPem(plain.str());
}

}  // namespace careloop::trust
