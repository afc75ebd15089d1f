// Routing by criteria: which agencies may take a referral, best first, and
// why each was chosen or passed over. Pure and deterministic: the same
// directory and criteria give the same order.
//
// Eligible: active; onboarded; offers the service category; has the receiver role;
// serves the subject's postal code or county (an agency without a service
// area serves everywhere); the eligibility facts pass (age, insurance type,
// veterans only, income limit); open capacity for the category.
// Order among the eligible: speaks the preferred language first, then more
// open slots, then agency id.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "careloop/v1/directory.pb.h"
#include "careloop/v1/referral.pb.h"

namespace careloop::referral {

// Why `agency` cannot take a referral of `category` at all, whoever names
// it: suspended, not onboarded, does not offer the category, does not
// receive referrals. Empty: it can. Routing by criteria adds area,
// eligibility and capacity; a sender naming the agency skips those.
std::vector<std::string> CannotReceive(const v1::AgencyRecord& agency, const std::string& category);

// `open_slots`: agency id -> open slots for the category now (absent: none
// reported). Returns every agency, eligible ones first in rank order.
std::vector<v1::RoutingCandidate> RankCandidates(const std::vector<v1::AgencyRecord>& agencies,
                                                 const std::string& category,
                                                 const v1::RoutingCriteria& criteria,
                                                 const std::map<std::string, int64_t>& open_slots);

// Each agency's open slots now for `category`, from its capacity reports
// (the `open_slots` RankCandidates takes).
std::map<std::string, int64_t> OpenSlotsFor(const std::vector<v1::AgencyRecord>& agencies,
                                            const std::string& category);

}  // namespace careloop::referral
