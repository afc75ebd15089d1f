#include "services/edge/sealed.h"

#include <openssl/evp.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/status.h"

namespace careloop::edge {
namespace {

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

Sealer::Sealer(absl::string_view kek, absl::string_view purpose)
    : key_(HmacSha256(kek, absl::StrCat("careloop edge seal v1\n", purpose))) {}

std::string Sealer::Seal(absl::string_view plaintext, absl::string_view bound_to) const {
  const std::string nonce = RandomBytes(kNonceBytes);
  std::string out = nonce;
  out.resize(kNonceBytes + plaintext.size() + kTagBytes);
  auto* cipher = reinterpret_cast<unsigned char*>(out.data() + kNonceBytes);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  CARELOOP_CHECK(ctx != nullptr);
  CARELOOP_CHECK(
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key_), Bytes(nonce)) == 1);
  CARELOOP_CHECK(EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(bound_to),
                                   static_cast<int>(bound_to.size())) == 1);
  CARELOOP_CHECK(EVP_EncryptUpdate(ctx.get(), cipher, &len, Bytes(plaintext),
                                   static_cast<int>(plaintext.size())) == 1);
  CARELOOP_CHECK(EVP_EncryptFinal_ex(ctx.get(), cipher + len, &len) == 1);
  CARELOOP_CHECK(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                                     cipher + plaintext.size()) == 1);
  return out;
}

absl::StatusOr<std::string> Sealer::Open(absl::string_view sealed,
                                         absl::string_view bound_to) const {
  const absl::Status denied = absl::PermissionDeniedError(
      "a sealed secret does not open under this edge's key-encryption key");
  if (sealed.size() < kNonceBytes + kTagBytes) return denied;
  const absl::string_view nonce = sealed.substr(0, kNonceBytes);
  const absl::string_view cipher =
      sealed.substr(kNonceBytes, sealed.size() - kNonceBytes - kTagBytes);
  std::string tag(sealed.substr(sealed.size() - kTagBytes));
  std::string plain(cipher.size(), '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  CARELOOP_CHECK(ctx != nullptr);
  int len = 0;
  CARELOOP_CHECK(
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key_), Bytes(nonce)) == 1);
  CARELOOP_CHECK(EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(bound_to),
                                   static_cast<int>(bound_to.size())) == 1);
  CARELOOP_CHECK(EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &len,
                                   Bytes(cipher), static_cast<int>(cipher.size())) == 1);
  CARELOOP_CHECK(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1);
  unsigned char rest[16];
  if (EVP_DecryptFinal_ex(ctx.get(), rest, &len) != 1) return denied;
  return plain;
}

}  // namespace careloop::edge
