#include "services/edge/fhir_directory.h"

#include "absl/strings/str_cat.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_json.h"

namespace careloop::edge::fhir {
namespace {

constexpr char kOrganizationType[] = "http://terminology.hl7.org/CodeSystem/organization-type";

const char* TypeCode(v1::AgencyKind kind) {
  switch (kind) {
    case v1::HOSPITAL:
      return "prov";
    case v1::COMMUNITY_AGENCY:
      return "cg";
    case v1::GOVERNMENT_OFFICE:
      return "govt";
    case v1::PAYER:
      return "pay";
    default:
      return "other";
  }
}

json Telecom(const v1::Contact& c) {
  json out = json::array();
  if (!c.phone().empty()) out.push_back(json{{"system", "phone"}, {"value", c.phone()}});
  if (!c.email().empty()) out.push_back(json{{"system", "email"}, {"value", c.email()}});
  if (!c.url().empty()) out.push_back(json{{"system", "url"}, {"value", c.url()}});
  return out;
}

// Only an address the caller may see: the hub leaves a confidential one
// empty for everyone else.
json Address(const v1::PostalAddress& a) {
  json out = json::object();
  if (!a.lines().empty())
    out["line"] = json(std::vector<std::string>(a.lines().begin(), a.lines().end()));
  if (!a.city().empty()) out["city"] = a.city();
  if (!a.county().empty()) out["district"] = a.county();
  if (!a.state().empty()) out["state"] = a.state();
  if (!a.postal_code().empty()) out["postalCode"] = a.postal_code();
  if (!a.country().empty()) out["country"] = a.country();
  return out;
}

}  // namespace

json OrganizationOf(const v1::AgencyRecord& agency) {
  const v1::AgencyProfile& p = agency.profile();
  json org{
      {"resourceType", "Organization"},
      {"id", agency.agency_id()},
      {"identifier", json::array({json{{"system", kAgencySystem}, {"value", agency.agency_id()}}})},
      {"active", agency.active()},
      {"type", json::array({Coding(kOrganizationType, TypeCode(p.kind()))})},
      {"name", p.display_name().empty() ? agency.agency_id() : p.display_name()}};
  if (json t = Telecom(p.contact()); !t.empty()) org["telecom"] = t;
  if (json a = Address(p.address()); !a.empty()) org["address"] = json::array({a});
  return org;
}

json HealthcareServiceOf(const v1::AgencyRecord& agency, const std::string& service) {
  const v1::AgencyProfile& p = agency.profile();
  json hs{{"resourceType", "HealthcareService"},
          {"id", absl::StrCat(agency.agency_id(), ".", service)},
          {"active", agency.active()},
          {"providedBy",
           json{{"reference", absl::StrCat("Organization/", agency.agency_id())},
                {"identifier", json{{"system", kAgencySystem}, {"value", agency.agency_id()}}}}},
          {"category", json::array({Coding(kServiceSystem, service)})},
          {"name", p.display_name().empty() ? agency.agency_id() : p.display_name()}};
  if (json t = Telecom(p.contact()); !t.empty()) hs["telecom"] = t;
  json languages = json::array();
  for (const std::string& l : p.languages()) languages.push_back(Coding("urn:ietf:bcp:47", l));
  if (!languages.empty()) hs["communication"] = languages;
  json area = json::array();
  for (const std::string& z : p.area().postal_codes()) area.push_back(z);
  if (!area.empty()) {
    hs["extension"] = json::array();
    for (const json& z : area) {
      hs["extension"].push_back(
          json{{"url", "urn:careloop:extension:service-area-postal-code"}, {"valueString", z}});
    }
  }
  for (const v1::CapacityEntry& c : agency.capacity()) {
    if (c.service() != service) continue;
    if (!hs.contains("extension")) hs["extension"] = json::array();
    hs["extension"].push_back(
        json{{"url", kOpenSlotsExtension}, {"valueUnsignedInt", c.open_slots()}});
  }
  return hs;
}

}  // namespace careloop::edge::fhir
