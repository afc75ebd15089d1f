// Randomness, HMAC and constant-time comparison through OpenSSL, for the
// code that makes secrets (tokens, salts, keys) and checks them.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace careloop {

// `n` bytes from OpenSSL's CSPRNG; a failing generator stops the process
// (nothing may go on with predictable secrets).
std::string RandomBytes(size_t n);

// HMAC-SHA256 and HMAC-SHA1 (the latter only where a standard fixes it, as
// RFC 6238's default TOTP does) of `data` under `key`, raw bytes.
std::string HmacSha256(absl::string_view key, absl::string_view data);
std::string HmacSha1(absl::string_view key, absl::string_view data);

// Whether `a` and `b` are equal, in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace careloop
