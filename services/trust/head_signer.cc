#include "services/trust/head_signer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace careloop::trust {

absl::StatusOr<std::unique_ptr<Ed25519NoteVerifier>> Ed25519NoteVerifier::FromVerifierKey(
    absl::string_view vkey) {
  ASSIGN_OR_RETURN(storage::ParsedVerifierKey parsed, storage::ParseVerifierKey(vkey));
  ASSIGN_OR_RETURN(Ed25519PublicKey key, Ed25519PublicKey::FromRaw(parsed.public_key));
  return std::unique_ptr<Ed25519NoteVerifier>(
      new Ed25519NoteVerifier(parsed.key_name, parsed.key_id, std::move(key)));
}

absl::StatusOr<std::unique_ptr<Ed25519NoteVerifier>> Ed25519NoteVerifier::FromFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read verifier key file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto v = FromVerifierKey(ss.str());
  if (!v.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", v.status().message()));
  }
  return v;
}

}  // namespace careloop::trust
