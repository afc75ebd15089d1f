#include "services/edge/totp.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crypto.h"
#include "base/status.h"

namespace careloop::edge {
namespace {

constexpr int kDigits = 6;

uint32_t Pow10(int digits) {
  uint32_t p = 1;
  for (int i = 0; i < digits; ++i) p *= 10;
  return p;
}

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string UriEscape(absl::string_view s) {
  std::string out;
  for (const char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

}  // namespace

int64_t TotpStep(absl::Time t) { return absl::ToUnixSeconds(t) / kTotpStepSeconds; }

std::string Hotp(absl::string_view secret, uint64_t counter, int digits) {
  CARELOOP_CHECK(digits >= 6 && digits <= 9);
  char msg[8];
  for (int i = 7; i >= 0; --i) {
    msg[i] = static_cast<char>(counter & 0xff);
    counter >>= 8;
  }
  const std::string mac = HmacSha1(secret, absl::string_view(msg, sizeof msg));
  const size_t offset = static_cast<unsigned char>(mac.back()) & 0x0f;
  const uint32_t binary = ((static_cast<unsigned char>(mac[offset]) & 0x7fU) << 24) |
                          (static_cast<unsigned char>(mac[offset + 1]) << 16) |
                          (static_cast<unsigned char>(mac[offset + 2]) << 8) |
                          static_cast<unsigned char>(mac[offset + 3]);
  return absl::StrFormat("%0*u", digits, binary % Pow10(digits));
}

absl::StatusOr<int64_t> VerifyTotp(absl::string_view secret, absl::string_view code, absl::Time now,
                                   int64_t last_used_step) {
  const absl::Status refused = absl::UnauthenticatedError("the one-time code is not valid");
  if (code.size() != kDigits) return refused;
  const int64_t step = TotpStep(now);
  // Every candidate is computed and compared, so the time taken does not
  // say which step matched.
  int64_t matched = -1;
  for (int64_t s = step - 1; s <= step + 1; ++s) {
    if (s < 0) continue;
    if (ConstantTimeEquals(Hotp(secret, static_cast<uint64_t>(s), kDigits), code) && matched < 0) {
      matched = s;
    }
  }
  if (matched < 0 || matched <= last_used_step) return refused;
  return matched;
}

std::string Base32Encode(absl::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : bytes) {
    buffer = (buffer << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 0x1f]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 0x1f]);
  return out;
}

absl::StatusOr<std::string> Base32Decode(absl::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char raw : text) {
    if (raw == '=' || raw == ' ') continue;
    const char c = absl::ascii_toupper(raw);
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    if (c >= '2' && c <= '7') v = 26 + (c - '2');
    if (v < 0) return absl::InvalidArgumentError("a base32 secret holds A-Z and 2-7 only");
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

std::string TotpUri(absl::string_view secret, absl::string_view label) {
  return absl::StrCat(
      "otpauth://totp/careloop:", UriEscape(label), "?secret=", Base32Encode(secret),
      "&issuer=careloop&algorithm=SHA1&digits=", kDigits, "&period=", kTotpStepSeconds);
}

}  // namespace careloop::edge
