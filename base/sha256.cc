#include "base/sha256.h"

#include <openssl/evp.h>

#include <memory>

#include "base/status.h"

namespace careloop {
namespace {
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
// EVP_MD_fetch is costly; fetch SHA-256 once per process.
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  CARELOOP_CHECK(md != nullptr);
  return md;
}
}  // namespace

Hash Sha256Parts(std::initializer_list<absl::string_view> parts) {
  // A context per thread avoids an allocation per hash on hot paths.
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  CARELOOP_CHECK(ctx != nullptr);
  CARELOOP_CHECK(EVP_DigestInit_ex2(ctx.get(), Sha256Md(), nullptr) == 1);
  for (absl::string_view p : parts) {
    CARELOOP_CHECK(EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1);
  }
  Hash out;
  unsigned int len = 0;
  CARELOOP_CHECK(EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1);
  CARELOOP_CHECK(len == out.size());
  return out;
}

Hash Sha256(absl::string_view data) { return Sha256Parts({data}); }

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

}  // namespace careloop
