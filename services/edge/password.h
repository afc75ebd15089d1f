// Staff passwords, hashed with scrypt (RFC 7914, memory-hard) through
// OpenSSL 3. A stored hash names its own cost, so raising the cost later
// leaves existing hashes verifiable (and NeedsRehash says which to renew at
// the next login).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace careloop::edge {

// scrypt's cost: N = 2^log2_n, block size r, parallelism p. Memory is
// 128 * N * r bytes: the default takes 32 MiB and about 0.1 s a hash.
struct PasswordCost {
  uint32_t log2_n = 15;
  uint32_t r = 8;
  uint32_t p = 1;
};

// A cost for tests only (1 MiB): the hash stays scrypt, just cheap.
inline constexpr PasswordCost kTestPasswordCost{10, 8, 1};

// What a new password must be: 12 to 128 bytes, not the user id.
inline constexpr size_t kMinPasswordBytes = 12;
inline constexpr size_t kMaxPasswordBytes = 128;
absl::Status CheckNewPassword(absl::string_view password, absl::string_view user_id);

// "scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>" with a fresh
// 16-byte salt and a 32-byte hash.
std::string HashPassword(absl::string_view password, const PasswordCost& cost);

// Whether `password` matches `stored` (constant-time in the hash). INVALID_
// ARGUMENT when `stored` is not a hash this code wrote (a damaged store).
absl::StatusOr<bool> VerifyPassword(absl::string_view password, absl::string_view stored);

// Whether `stored` was made with another cost than `cost`.
bool NeedsRehash(absl::string_view stored, const PasswordCost& cost);

// The raw scrypt function (exposed for its RFC 7914 test vectors).
std::string Scrypt(absl::string_view password, absl::string_view salt, const PasswordCost& cost,
                   size_t out_bytes);

}  // namespace careloop::edge
