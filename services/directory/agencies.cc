#include "services/directory/agencies.h"

#include <algorithm>

namespace careloop::directory {

int64_t OpenSlots(const v1::CapacityEntry& c) {
  return static_cast<int64_t>(c.open_slots()) - c.holders_size();
}

bool Onboarded(const v1::AgencyRecord& agency) {
  const bool key = std::any_of(agency.keys().begin(), agency.keys().end(),
                               [](const v1::AgencyKey& k) { return k.revoked_unix_nanos() == 0; });
  const bool actor = std::any_of(agency.actors().begin(), agency.actors().end(),
                                 [](const v1::ActorEntry& a) { return !a.inactive(); });
  return key && actor;
}

const std::set<std::string>& DefaultServiceCodes() {
  static const std::set<std::string> codes = {
      // HL7 SDOH Clinical Care IG categories.
      "food-insecurity", "housing-instability", "homelessness", "inadequate-housing",
      "transportation-insecurity", "utility-insecurity", "financial-insecurity",
      "material-hardship", "employment-status", "educational-attainment", "veteran-status",
      "stress", "social-connection", "intimate-partner-violence", "elder-abuse",
      "personal-health-literacy", "health-insurance-coverage-status", "medical-cost-burden",
      "digital-literacy", "digital-access",
      // careloop's own.
      "behavioral-health", "substance-use-treatment", "home-health", "primary-care", "legal-aid"};
  return codes;
}

}  // namespace careloop::directory
