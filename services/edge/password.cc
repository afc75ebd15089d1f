#include "services/edge/password.h"

#include <openssl/evp.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/crypto.h"
#include "base/status.h"

namespace careloop::edge {
namespace {

constexpr absl::string_view kScheme = "scrypt";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
// The most a stored hash may ask for (log2 N, r, p): a damaged or hostile
// store must not make a login take gigabytes.
constexpr uint32_t kMaxLog2N = 20;
constexpr uint32_t kMaxR = 16;
constexpr uint32_t kMaxP = 4;

struct Parsed {
  PasswordCost cost;
  std::string salt;
  std::string hash;
};

absl::StatusOr<Parsed> Parse(absl::string_view stored) {
  const std::vector<absl::string_view> parts = absl::StrSplit(stored, '$');
  const absl::Status bad = absl::InvalidArgumentError("a stored password hash is not readable");
  if (parts.size() != 6 || parts[0] != kScheme) return bad;
  Parsed out;
  if (!absl::SimpleAtoi(parts[1], &out.cost.log2_n) || !absl::SimpleAtoi(parts[2], &out.cost.r) ||
      !absl::SimpleAtoi(parts[3], &out.cost.p)) {
    return bad;
  }
  if (out.cost.log2_n < 1 || out.cost.log2_n > kMaxLog2N || out.cost.r < 1 || out.cost.r > kMaxR ||
      out.cost.p < 1 || out.cost.p > kMaxP) {
    return bad;
  }
  if (!absl::Base64Unescape(parts[4], &out.salt) || !absl::Base64Unescape(parts[5], &out.hash) ||
      out.salt.empty() || out.hash.size() != kHashBytes) {
    return bad;
  }
  return out;
}

}  // namespace

absl::Status CheckNewPassword(absl::string_view password, absl::string_view user_id) {
  if (password.size() < kMinPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a password needs at least ", kMinPasswordBytes, " characters"));
  }
  if (password.size() > kMaxPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a password may have at most ", kMaxPasswordBytes, " bytes"));
  }
  if (password == user_id) return absl::InvalidArgumentError("a password may not be the user id");
  return absl::OkStatus();
}

std::string Scrypt(absl::string_view password, absl::string_view salt, const PasswordCost& cost,
                   size_t out_bytes) {
  std::string out(out_bytes, '\0');
  const uint64_t n = uint64_t{1} << cost.log2_n;
  // OpenSSL refuses a cost needing more than maxmem, 128 r (N + p + 2)
  // bytes: allow exactly what this cost needs (Parse bounds the cost).
  const uint64_t maxmem = 128 * uint64_t{cost.r} * (n + cost.p + 2);
  CARELOOP_CHECK(EVP_PBE_scrypt(password.data(), password.size(),
                                reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), n,
                                cost.r, cost.p, maxmem,
                                reinterpret_cast<unsigned char*>(out.data()), out.size()) == 1);
  return out;
}

std::string HashPassword(absl::string_view password, const PasswordCost& cost) {
  const std::string salt = RandomBytes(kSaltBytes);
  const std::string hash = Scrypt(password, salt, cost, kHashBytes);
  return absl::StrCat(kScheme, "$", cost.log2_n, "$", cost.r, "$", cost.p, "$",
                      absl::Base64Escape(salt), "$", absl::Base64Escape(hash));
}

absl::StatusOr<bool> VerifyPassword(absl::string_view password, absl::string_view stored) {
  ASSIGN_OR_RETURN(Parsed parsed, Parse(stored));
  if (password.size() > kMaxPasswordBytes) return false;
  return ConstantTimeEquals(Scrypt(password, parsed.salt, parsed.cost, kHashBytes), parsed.hash);
}

bool NeedsRehash(absl::string_view stored, const PasswordCost& cost) {
  absl::StatusOr<Parsed> parsed = Parse(stored);
  return !parsed.ok() || parsed->cost.log2_n != cost.log2_n || parsed->cost.r != cost.r ||
         parsed->cost.p != cost.p;
}

}  // namespace careloop::edge
