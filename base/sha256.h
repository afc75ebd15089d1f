// SHA-256 through OpenSSL's EVP interface.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace careloop {

using Hash = std::array<uint8_t, 32>;

// One-shot SHA-256 of `data`.
Hash Sha256(absl::string_view data);
// SHA-256 of the concatenation of the parts, without copying them together.
Hash Sha256Parts(std::initializer_list<absl::string_view> parts);

inline absl::string_view AsStringView(const Hash& h) {
  return {reinterpret_cast<const char*>(h.data()), h.size()};
}
inline std::string ToBytes(const Hash& h) { return std::string(AsStringView(h)); }
std::string HexEncode(absl::string_view bytes);

}  // namespace careloop
