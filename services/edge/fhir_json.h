// Reading FHIR JSON (nlohmann::json) the way the edge's FHIR mapping needs:
// fields that may be absent or of the wrong type, codings, identifiers,
// references within a Bundle, and refusals naming the element.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace careloop::edge::fhir {

using json = nlohmann::json;

// 422 (a business rule) and 400 (malformed), naming the element.
absl::Status Unprocessable(const std::string& expression, const std::string& message);
absl::Status Invalid(const std::string& expression, const std::string& message);

// A string member ("" when absent or not a string); a member (null when absent).
std::string Str(const json& j, const char* key);
const json& Member(const json& j, const char* key);
// Every coding of a CodeableConcept or of a list of them.
std::vector<const json*> Codings(const json& concepts);
bool HasCoding(const json& concepts, const std::string& system, const std::string& code);
json Coding(const std::string& system, const std::string& code);
// An agency as a reference: an Organization by its careloop identifier.
json AgencyReference(const std::string& agency);
// The value of the first identifier of `system` (an Identifier or a list).
std::string IdentifierValue(const json& identifiers, const std::string& system);

// The entries of a Bundle, found by fullUrl and by "Type/id".
class Entries {
 public:
  Entries() = default;
  explicit Entries(const json& entries) {
    for (const json& e : entries) {
      const json& r = Member(e, "resource");
      const std::string full = Str(e, "fullUrl");
      if (!full.empty()) by_ref_[full] = &r;
      if (!Str(r, "id").empty())
        by_ref_[absl::StrCat(Str(r, "resourceType"), "/", Str(r, "id"))] = &r;
    }
  }
  const json* Resolve(const json& reference) const {
    const std::string ref = Str(reference, "reference");
    if (ref.empty()) return nullptr;
    auto it = by_ref_.find(ref);
    if (it != by_ref_.end()) return it->second;
    for (const auto& [full, r] : by_ref_) {
      if (absl::EndsWith(full, absl::StrCat("/", ref))) return r;
    }
    return nullptr;
  }

 private:
  std::map<std::string, const json*> by_ref_;
};

// The directory agency an Organization reference names: by identifier
// (urn:careloop:agency), an Organization of the Bundle carrying one, or the
// literal Organization/<agency id>; "" otherwise.
std::string AgencyOf(const json& reference, const Entries& entries);

}  // namespace careloop::edge::fhir
