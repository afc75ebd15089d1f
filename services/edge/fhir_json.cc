#include "services/edge/fhir_json.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/edge/fhir_api.h"

namespace careloop::edge::fhir {

absl::Status Unprocessable(const std::string& expression, const std::string& message) {
  return Refusal(422, expression, message);
}
absl::Status Invalid(const std::string& expression, const std::string& message) {
  return Refusal(400, expression, message);
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& Member(const json& j, const char* key) {
  static const json kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// Every coding of a CodeableConcept or of a list of them.
std::vector<const json*> Codings(const json& concepts) {
  std::vector<const json*> out;
  auto add = [&out](const json& cc) {
    const json& codings = Member(cc, "coding");
    if (!codings.is_array()) return;
    for (const json& c : codings) {
      if (c.is_object()) out.push_back(&c);
    }
  };
  if (concepts.is_array()) {
    for (const json& cc : concepts) {
      if (cc.is_object()) add(cc);
    }
  } else if (concepts.is_object()) {
    add(concepts);
  }
  return out;
}

bool HasCoding(const json& concepts, const std::string& system, const std::string& code) {
  for (const json* c : Codings(concepts)) {
    if (Str(*c, "system") == system && Str(*c, "code") == code) return true;
  }
  return false;
}

json Coding(const std::string& system, const std::string& code) {
  return json{{"coding", json::array({json{{"system", system}, {"code", code}}})}};
}

json AgencyReference(const std::string& agency) {
  return json{{"type", "Organization"},
              {"identifier", json{{"system", kAgencySystem}, {"value", agency}}}};
}

// The value of the first identifier of `system` among `identifiers`.
std::string IdentifierValue(const json& identifiers, const std::string& system) {
  auto match = [&system](const json& id) {
    return id.is_object() && Str(id, "system") == system ? Str(id, "value") : std::string();
  };
  if (identifiers.is_object()) return match(identifiers);
  if (!identifiers.is_array()) return "";
  for (const json& id : identifiers) {
    if (std::string v = match(id); !v.empty()) return v;
  }
  return "";
}

// The directory agency an Organization reference names.
std::string AgencyOf(const json& reference, const Entries& entries) {
  if (std::string v = IdentifierValue(Member(reference, "identifier"), kAgencySystem); !v.empty())
    return v;
  if (const json* r = entries.Resolve(reference); r != nullptr)
    return IdentifierValue(Member(*r, "identifier"), kAgencySystem);
  // A literal reference to the directory: Organization/<agency id>.
  const std::string literal = Str(reference, "reference");
  absl::string_view ref = literal;
  if (absl::ConsumePrefix(&ref, "Organization/")) return std::string(ref);
  return "";
}

}  // namespace careloop::edge::fhir
