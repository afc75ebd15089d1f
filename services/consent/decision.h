// Consent decisions (core, no gRPC, no storage): given a subject's consents,
// may data of each category go to a recipient, for a purpose, at a time?
//
// Rules (issue 4, DESIGN.md "Consent"):
// - no consent covers the request -> deny;
// - within one consent, the most specific (deepest) matching rule wins;
// - across consents, deny wins over permit;
// - a sensitive category (behavioural health, SUD records under 42 CFR Part 2,
//   HIV/STI, reproductive health) is permitted only by a rule chain that names
//   it explicitly, never by "all categories";
// - revoked, expired, entered-in-error or not-yet-valid consents neither
//   permit nor deny.
// Periods are [start, end): valid at start, no longer valid at end.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "careloop/v1/consent.pb.h"

namespace careloop::consent {

// The categories the hub knows; sensitive ones need explicit naming.
const std::set<std::string>& KnownCategories();
const std::set<std::string>& SensitiveCategories();

struct Recipient {
  std::string agency_id;
  v1::AgencyKind kind = v1::AGENCY_KIND_UNSPECIFIED;
};

struct CategoryDecision {
  std::string category;
  bool permit = false;
  std::vector<std::string> consent_ids;  // the consents relied on (permit) or denying
  std::string reason;                    // for people; never carries personal data
};

// Decides each category on its own. `consents` are the subject's consents in
// any order and any status.
std::vector<CategoryDecision> Decide(const std::vector<v1::Consent>& consents,
                                     const Recipient& recipient, const std::string& purpose,
                                     const std::vector<std::string>& categories, absl::Time at);

}  // namespace careloop::consent
