#include "base/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "base/status.h"

namespace careloop {
namespace {

std::string Hmac(const EVP_MD* md, absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CARELOOP_CHECK(HMAC(md, key.data(), static_cast<int>(key.size()),
                      reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
                      &len) != nullptr);
  return std::string(reinterpret_cast<const char*>(out), len);
}

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  CARELOOP_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) ==
                 1);
  return out;
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  return Hmac(EVP_sha256(), key, data);
}

std::string HmacSha1(absl::string_view key, absl::string_view data) {
  return Hmac(EVP_sha1(), key, data);
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace careloop
