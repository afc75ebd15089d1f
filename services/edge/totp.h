// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), the second
// factor staff with the admin role must use: HMAC-SHA1, 6 digits, 30-second
// steps, the form authenticator apps accept from an otpauth:// URI.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace careloop::edge {

inline constexpr size_t kTotpSecretBytes = 20;
inline constexpr int64_t kTotpStepSeconds = 30;

// The step `t` falls in (T in RFC 6238).
int64_t TotpStep(absl::Time t);

// The HOTP value of `secret` at `counter` with `digits` digits (RFC 4226
// 5.3, dynamic truncation), zero-padded.
std::string Hotp(absl::string_view secret, uint64_t counter, int digits);

// Checks `code` against the steps around `now` (one step either side, for
// clocks that drift) and returns the step it matched. A step at or before
// `last_used_step` is refused, so one code cannot be used twice.
// UNAUTHENTICATED (naming nothing) otherwise.
absl::StatusOr<int64_t> VerifyTotp(absl::string_view secret, absl::string_view code, absl::Time now,
                                   int64_t last_used_step);

// RFC 4648 base32 without padding, as authenticator apps take secrets.
std::string Base32Encode(absl::string_view bytes);

// Its inverse (case and padding ignored); INVALID_ARGUMENT for other text.
absl::StatusOr<std::string> Base32Decode(absl::string_view text);

// otpauth://totp/careloop:<label>?secret=...&issuer=careloop (the label is a
// staff login, never a person's name).
std::string TotpUri(absl::string_view secret, absl::string_view label);

}  // namespace careloop::edge
