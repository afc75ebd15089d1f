// The directory in FHIR R4 terms (docs/API.md, "FHIR R4", directory): an
// agency as an Organization, each service it offers as a HealthcareService.
// Rendered from the AgencyRecord the hub returns to the caller, which has
// already masked what the caller may not see (a confidential address, the
// referrals holding capacity); staff are never listed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "careloop/v1/directory.pb.h"

namespace careloop::edge::fhir {

using json = nlohmann::json;

inline constexpr char kOpenSlotsExtension[] = "urn:careloop:extension:open-slots";

json OrganizationOf(const v1::AgencyRecord& agency);
// The HealthcareService "<agency id>.<service code>".
json HealthcareServiceOf(const v1::AgencyRecord& agency, const std::string& service);

}  // namespace careloop::edge::fhir
