#include "services/referral/sections.h"

#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/trust/envelope.h"

namespace careloop::referral {
namespace {

// JSON sections must be JSON: a JSON value for application/json, a FHIR
// resource (an object naming its resourceType) for application/fhir+json.
// The error names the section and what is wrong, never the content.
absl::Status CheckContent(const v1::Section& s) {
  const bool fhir = s.media_type() == "application/fhir+json";
  if (!fhir && s.media_type() != "application/json") return absl::OkStatus();
  const nlohmann::json j = nlohmann::json::parse(s.content(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("section ", s.section_id(), " is labelled ",
                                                   s.media_type(), " but is not well-formed JSON"));
  }
  if (!fhir) return absl::OkStatus();
  const auto type = j.is_object() ? j.find("resourceType") : j.end();
  if (!j.is_object() || type == j.end() || !type->is_string() ||
      !std::regex_match(type->get<std::string>(), std::regex("[A-Z][A-Za-z]{1,63}"))) {
    return absl::InvalidArgumentError(
        absl::StrCat("section ", s.section_id(),
                     " is labelled application/fhir+json but is not a FHIR resource (a JSON "
                     "object with a resourceType)"));
  }
  return absl::OkStatus();
}

absl::Status CheckShape(const v1::Section& s, const SectionLimits& limits) {
  if (s.section_id().empty() || s.section_id().size() > 64) {
    return absl::InvalidArgumentError("a section id must be 1 to 64 bytes");
  }
  for (char c : s.section_id()) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return absl::InvalidArgumentError("a section id may hold only [A-Za-z0-9._-]");
  }
  if (s.category().empty())
    return absl::InvalidArgumentError(absl::StrCat("section ", s.section_id(), " has no category"));
  if (!limits.media_types.contains(s.media_type())) {
    return absl::InvalidArgumentError(
        absl::StrCat("section ", s.section_id(), " has a media type the hub does not take"));
  }
  if (s.content().size() > limits.max_section_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("section ", s.section_id(), " is larger than ",
                                                   limits.max_section_bytes, " bytes"));
  }
  return CheckContent(s);
}

}  // namespace

std::string SectionDigestOf(const v1::Section& s) {
  std::string input;
  input.reserve(s.content().size() + s.section_id().size() + 128);
  trust::AppendLengthPrefixed(&input, kSectionDomain);
  trust::AppendLengthPrefixed(&input, s.salt());
  trust::AppendLengthPrefixed(&input, s.section_id());
  trust::AppendLengthPrefixed(&input, s.category());
  trust::AppendLengthPrefixed(&input, s.media_type());
  trust::AppendLengthPrefixed(&input, s.content());
  return ToBytes(Sha256(input));
}

absl::StatusOr<std::vector<v1::SectionDigest>> SealSections(
    std::vector<v1::Section>* sections, const std::function<std::string(size_t)>& random,
    const SectionLimits& limits) {
  if (sections->size() > limits.max_sections)
    return absl::InvalidArgumentError(absl::StrCat("at most ", limits.max_sections, " sections"));
  std::vector<v1::SectionDigest> out;
  std::set<std::string> ids;
  size_t total = 0;
  for (v1::Section& s : *sections) {
    RETURN_IF_ERROR(CheckShape(s, limits));
    if (!ids.insert(s.section_id()).second)
      return absl::InvalidArgumentError(
          absl::StrCat("section id ", s.section_id(), " is used twice"));
    total += s.content().size();
    s.set_salt(random(kSaltBytes));
    if (s.salt().size() != kSaltBytes)
      return absl::InternalError("the salt source gave short salt");
    v1::SectionDigest d;
    d.set_section_id(s.section_id());
    d.set_category(s.category());
    d.set_media_type(s.media_type());
    d.set_size(s.content().size());
    d.set_sha256(SectionDigestOf(s));
    out.push_back(std::move(d));
  }
  if (total > limits.max_total_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the sections hold more than ", limits.max_total_bytes, " bytes"));
  }
  return out;
}

absl::Status VerifySections(const google::protobuf::RepeatedPtrField<v1::SectionDigest>& manifest,
                            const std::vector<v1::Section>& sections, bool require_all,
                            const SectionLimits& limits) {
  if (static_cast<size_t>(manifest.size()) > limits.max_sections) {
    return absl::InvalidArgumentError(
        absl::StrCat("the manifest lists more than ", limits.max_sections, " sections"));
  }
  std::map<std::string, const v1::SectionDigest*> by_id;
  for (const v1::SectionDigest& d : manifest) {
    if (d.sha256().size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat("the manifest's digest of section ", d.section_id(), " is not 32 bytes"));
    }
    if (!by_id.emplace(d.section_id(), &d).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("the manifest lists section ", d.section_id(), " twice"));
    }
  }
  std::set<std::string> seen;
  for (const v1::Section& s : sections) {
    RETURN_IF_ERROR(CheckShape(s, limits));
    auto it = by_id.find(s.section_id());
    if (it == by_id.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("section ", s.section_id(), " is not in the signed manifest"));
    }
    if (!seen.insert(s.section_id()).second)
      return absl::InvalidArgumentError(
          absl::StrCat("section ", s.section_id(), " is given twice"));
    const v1::SectionDigest& d = *it->second;
    if (s.salt().size() != kSaltBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("section ", s.section_id(), " does not carry a 32-byte salt"));
    }
    if (s.category() != d.category() || s.media_type() != d.media_type() ||
        s.content().size() != d.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "section ", s.section_id(), " does not match the manifest's category, type or size"));
    }
    if (SectionDigestOf(s) != d.sha256()) {
      return absl::InvalidArgumentError(
          absl::StrCat("section ", s.section_id(), " does not match its signed digest"));
    }
  }
  if (require_all && seen.size() != by_id.size()) {
    for (const auto& [id, d] : by_id) {
      if (!seen.contains(id)) {
        return absl::InvalidArgumentError(
            absl::StrCat("section ", id, " of the manifest is missing"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace careloop::referral
