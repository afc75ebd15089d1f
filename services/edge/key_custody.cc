#include "services/edge/key_custody.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/file.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/trust/encrypted_key.h"
#include "storage/validate.h"

namespace careloop::edge {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kSuffix = ".key.pem";
constexpr absl::string_view kMacLabel = "careloop-edge-key-mac: ";

// PBES2's AES-CBC has no integrity: a damaged ciphertext can decrypt to
// another valid Ed25519 key. Each file therefore starts with an HMAC-SHA256,
// under the key-encryption key, of the agency it is for and the encrypted
// key, checked before decrypting (which also refuses one agency's file
// renamed to another's).
std::string MacOf(absl::string_view kek, absl::string_view agency, absl::string_view pem) {
  return HexEncode(HmacSha256(kek, absl::StrCat("careloop edge key v1\n", agency, "\n", pem)));
}

// The encrypted key in a file's bytes once its MAC is checked.
absl::StatusOr<absl::string_view> Authenticated(absl::string_view kek, absl::string_view agency,
                                                absl::string_view file) {
  const size_t eol = file.find('\n');
  const absl::string_view denied =
      "does not authenticate under this edge's key-encryption key (another key-encryption key, "
      "a damaged file, or another agency's file)";
  if (!absl::StartsWith(file, kMacLabel) || eol == absl::string_view::npos) {
    return absl::PermissionDeniedError(denied);
  }
  const absl::string_view mac = file.substr(kMacLabel.size(), eol - kMacLabel.size());
  const absl::string_view pem = file.substr(eol + 1);
  const std::string want = MacOf(kek, agency, pem);
  if (!ConstantTimeEquals(mac, want)) {
    return absl::PermissionDeniedError(denied);
  }
  return pem;
}

// Group or others may read or enter `path`.
absl::Status PrivateOnly(const std::string& path, absl::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(what, " ", path, ": ", ErrnoMessage(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(what, " ", path,
                                                    " is open to group or others; run: chmod ",
                                                    S_ISDIR(st.st_mode) ? "700 " : "600 ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KeyCustody> KeyCustody::Open(std::string dir, std::string kek) {
  if (kek.size() < kMinKekBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the edge's key-encryption key has ", kek.size(), " bytes; it needs at least ",
                     kMinKekBytes, " random bytes (for instance: openssl rand -base64 32)"));
  }
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create the edge's key directory ", dir, ": ", ec.message()));
    }
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot restrict the edge's key directory ", dir, ": ", ec.message()));
    }
  }
  RETURN_IF_ERROR(PrivateOnly(dir, "the edge's key directory"));
  return KeyCustody(std::move(dir), std::move(kek));
}

absl::StatusOr<std::string> KeyCustody::PathOf(absl::string_view agency) const {
  // Agency ids are [a-z0-9][a-z0-9.-]*: no separator, no leading dot.
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  return absl::StrCat(dir_, "/", agency, kSuffix);
}

absl::StatusOr<trust::Ed25519PrivateKey> KeyCustody::Load(absl::string_view agency) const {
  ASSIGN_OR_RETURN(const std::string path, PathOf(agency));
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("this edge holds no signing key for ", agency));
  }
  RETURN_IF_ERROR(PrivateOnly(path, "key file"));
  ASSIGN_OR_RETURN(const std::string file, ReadFile(path));
  absl::StatusOr<trust::Ed25519PrivateKey> key = [&]() -> absl::StatusOr<trust::Ed25519PrivateKey> {
    ASSIGN_OR_RETURN(const absl::string_view pem, Authenticated(kek_, agency, file));
    return trust::DecryptPrivateKey(pem, kek_);
  }();
  if (!key.ok()) {
    return absl::Status(key.status().code(), absl::StrCat("the signing key of ", agency, " (", path,
                                                          "): ", key.status().message()));
  }
  return key;
}

absl::StatusOr<trust::Ed25519PrivateKey> KeyCustody::Create(absl::string_view agency) {
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key, trust::Ed25519PrivateKey::Generate());
  RETURN_IF_ERROR(Import(agency, key));
  return key;
}

absl::Status KeyCustody::Import(absl::string_view agency, const trust::Ed25519PrivateKey& key) {
  ASSIGN_OR_RETURN(const std::string path, PathOf(agency));
  std::error_code ec;
  if (fs::exists(path, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("this edge already holds a signing key for ",
                                                 agency, "; a key is never overwritten"));
  }
  const std::string pem = trust::EncryptPrivateKey(key, kek_);
  return WriteFileAtomically(path, absl::StrCat(kMacLabel, MacOf(kek_, agency, pem), "\n", pem),
                             0600);
}

absl::StatusOr<std::vector<std::string>> KeyCustody::Agencies() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (!absl::EndsWith(name, kSuffix)) continue;
    std::string agency = name.substr(0, name.size() - kSuffix.size());
    if (storage::ValidateAgencyId(agency).ok()) out.push_back(std::move(agency));
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("reading the edge's key directory ", dir_, ": ", ec.message()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::string> KekFromEnvironment() {
  // Read at startup, before threads that could change the environment.
  const char* v = std::getenv(kKekEnvironmentVariable);  // NOLINT(concurrency-mt-unsafe)
  if (v == nullptr || *v == '\0') {
    return absl::NotFoundError(absl::StrCat("no key-encryption key: set ", kKekEnvironmentVariable,
                                            " (for instance to the output of openssl rand "
                                            "-base64 32)"));
  }
  return std::string(v);
}

}  // namespace careloop::edge
