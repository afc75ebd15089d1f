#include "base/file.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace careloop {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ErrnoMessage(int err) {
  char buf[256];
  // GNU strerror_r: returns the message, in `buf` or a static string.
  return std::string(strerror_r(err, buf, sizeof buf));
}

}  // namespace careloop
