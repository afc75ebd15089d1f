#include "storage/checkpoint.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status.h"

namespace careloop::storage {
namespace {

constexpr absl::string_view kEmDash = "\xe2\x80\x94";  // U+2014
constexpr uint8_t kEd25519Type = 0x01;
constexpr size_t kMaxNoteBytes = size_t{16} * 1024;

bool ValidKeyName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c == '+' || static_cast<unsigned char>(c) <= 0x20) return false;
  }
  return true;
}

}  // namespace

uint32_t Ed25519KeyId(absl::string_view key_name, absl::string_view public_key) {
  const char type = static_cast<char>(kEd25519Type);
  Hash h = Sha256Parts({key_name, "\n", absl::string_view(&type, 1), public_key});
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | uint32_t{h[3]};
}

std::string Ed25519VerifierKey(absl::string_view key_name, absl::string_view public_key) {
  std::string typed(1, static_cast<char>(kEd25519Type));
  typed.append(public_key.data(), public_key.size());
  char id[9];
  std::snprintf(id, sizeof id, "%08x", Ed25519KeyId(key_name, public_key));
  return absl::StrCat(key_name, "+", id, "+", absl::Base64Escape(typed));
}

absl::StatusOr<ParsedVerifierKey> ParseVerifierKey(absl::string_view vkey) {
  while (!vkey.empty() && (vkey.back() == '\n' || vkey.back() == '\r' || vkey.back() == ' ')) {
    vkey.remove_suffix(1);
  }
  // The name and the id hold no '+'; the base64 key may.
  size_t p1 = vkey.find('+');
  size_t p2 = p1 == absl::string_view::npos ? p1 : vkey.find('+', p1 + 1);
  if (p2 == absl::string_view::npos) {
    return absl::InvalidArgumentError("a verifier key has the form <name>+<id hex>+<base64 key>");
  }
  std::vector<absl::string_view> parts = {vkey.substr(0, p1), vkey.substr(p1 + 1, p2 - p1 - 1),
                                          vkey.substr(p2 + 1)};
  ParsedVerifierKey out;
  out.key_name = std::string(parts[0]);
  if (!ValidKeyName(out.key_name)) return absl::InvalidArgumentError("invalid key name in vkey");
  if (parts[1].size() != 8 || !absl::SimpleHexAtoi(parts[1], &out.key_id)) {
    return absl::InvalidArgumentError("invalid key id in vkey");
  }
  std::string typed;
  if (!absl::Base64Unescape(parts[2], &typed) || absl::Base64Escape(typed) != parts[2] ||
      typed.size() != 33 || static_cast<uint8_t>(typed[0]) != kEd25519Type) {
    return absl::InvalidArgumentError("vkey does not hold an Ed25519 key");
  }
  out.public_key = typed.substr(1);
  if (Ed25519KeyId(out.key_name, out.public_key) != out.key_id) {
    return absl::InvalidArgumentError("vkey key id does not match its name and key");
  }
  return out;
}

std::string FormatCheckpointBody(const Checkpoint& cp) {
  return absl::StrCat(cp.origin, "\n", cp.tree_size, "\n",
                      absl::Base64Escape(AsStringView(cp.root)), "\n", "time ", cp.time_unix_nanos,
                      "\n");
}

absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body) {
  if (body.empty() || body.back() != '\n') {
    return absl::InvalidArgumentError("checkpoint body must end with a newline");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(body.substr(0, body.size() - 1), '\n');
  if (lines.size() < 3) return absl::InvalidArgumentError("checkpoint body has fewer than 3 lines");
  Checkpoint cp;
  cp.origin = std::string(lines[0]);
  if (cp.origin.empty()) return absl::InvalidArgumentError("checkpoint origin is empty");
  if (lines[1].empty() || (lines[1].size() > 1 && lines[1][0] == '0') ||
      !absl::SimpleAtoi(lines[1], &cp.tree_size)) {
    return absl::InvalidArgumentError("checkpoint tree size is not a decimal number");
  }
  std::string root;
  if (!absl::Base64Unescape(lines[2], &root) || root.size() != 32 ||
      absl::Base64Escape(root) != lines[2]) {
    return absl::InvalidArgumentError("checkpoint root is not base64 of 32 bytes");
  }
  std::copy(root.begin(), root.end(), cp.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) return absl::InvalidArgumentError("empty extension line in checkpoint");
    if (absl::ConsumePrefix(&lines[i], "time ")) {
      if (!absl::SimpleAtoi(lines[i], &cp.time_unix_nanos)) {
        return absl::InvalidArgumentError("checkpoint time is not a number");
      }
    }
  }
  return cp;
}

absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& cp, const HeadSigner& signer) {
  std::string body = FormatCheckpointBody(cp);
  ASSIGN_OR_RETURN(std::string sig, signer.Sign(body));
  uint32_t id = Ed25519KeyId(signer.key_name(), signer.public_key());
  std::string blob;
  blob.push_back(static_cast<char>(id >> 24));
  blob.push_back(static_cast<char>(id >> 16));
  blob.push_back(static_cast<char>(id >> 8));
  blob.push_back(static_cast<char>(id));
  blob.append(sig);
  return absl::StrCat(body, "\n", kEmDash, " ", signer.key_name(), " ", absl::Base64Escape(blob),
                      "\n");
}

absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note, const NoteVerifier& verifier) {
  if (note.size() > kMaxNoteBytes) return absl::InvalidArgumentError("signed note is too large");
  size_t split = note.find("\n\n");
  if (split == absl::string_view::npos) {
    return absl::InvalidArgumentError("signed note has no blank line before its signatures");
  }
  absl::string_view body = note.substr(0, split + 1);
  absl::string_view sigs = note.substr(split + 2);
  if (sigs.empty() || sigs.back() != '\n') {
    return absl::InvalidArgumentError("signed note has no signature lines");
  }
  bool verified = false;
  for (absl::string_view line : absl::StrSplit(sigs.substr(0, sigs.size() - 1), '\n')) {
    if (!absl::ConsumePrefix(&line, kEmDash) || !absl::ConsumePrefix(&line, " ")) {
      return absl::InvalidArgumentError("malformed signature line in signed note");
    }
    size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) {
      return absl::InvalidArgumentError("malformed signature line in signed note");
    }
    absl::string_view name = line.substr(0, space);
    std::string blob;
    absl::string_view encoded = line.substr(space + 1);
    // Only the canonical encoding: no second spelling of the same signature.
    if (!absl::Base64Unescape(encoded, &blob) || blob.size() < 5 ||
        absl::Base64Escape(blob) != encoded) {
      return absl::InvalidArgumentError("malformed signature in signed note");
    }
    uint32_t id = (uint32_t{static_cast<uint8_t>(blob[0])} << 24) |
                  (uint32_t{static_cast<uint8_t>(blob[1])} << 16) |
                  (uint32_t{static_cast<uint8_t>(blob[2])} << 8) |
                  uint32_t{static_cast<uint8_t>(blob[3])};
    if (name != verifier.key_name() || id != verifier.key_id()) continue;  // another signer
    if (!verifier.Verify(body, absl::string_view(blob).substr(4))) {
      return absl::InvalidArgumentError(
          absl::StrCat("the signature by ", name, " on the checkpoint is invalid"));
    }
    verified = true;
  }
  if (!verified) {
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint carries no signature by key ", verifier.key_name()));
  }
  return ParseCheckpointBody(body);
}

std::string OriginFor(absl::string_view hub_name, absl::string_view log_id) {
  return absl::StrCat(hub_name, "/", log_id);
}

std::string LogIdOfOrigin(absl::string_view origin) {
  size_t slash = origin.rfind('/');
  if (slash == absl::string_view::npos) return "";
  return std::string(origin.substr(slash + 1));
}

}  // namespace careloop::storage
