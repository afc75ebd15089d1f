#include "services/referral/routing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "services/directory/agencies.h"

namespace careloop::referral {

std::vector<std::string> CannotReceive(const v1::AgencyRecord& agency,
                                       const std::string& category) {
  std::vector<std::string> no;
  if (!agency.active()) no.push_back("suspended");
  if (!directory::Onboarded(agency)) no.push_back("not onboarded (no key or no active actor)");
  if (!Contains(agency.profile().services(), category))
    no.push_back(absl::StrCat("does not offer ", category));
  if (!Contains(agency.profile().roles(), "receiver")) no.push_back("does not receive referrals");
  return no;
}

std::vector<v1::RoutingCandidate> RankCandidates(const std::vector<v1::AgencyRecord>& agencies,
                                                 const std::string& category,
                                                 const v1::RoutingCriteria& c,
                                                 const std::map<std::string, int64_t>& open_slots) {
  std::vector<v1::RoutingCandidate> out;
  for (const v1::AgencyRecord& a : agencies) {
    const v1::AgencyProfile& p = a.profile();
    v1::RoutingCandidate r;
    r.set_agency_id(a.agency_id());
    std::vector<std::string> no = CannotReceive(a, category);
    const bool has_area = !p.area().postal_codes().empty() || !p.area().counties().empty();
    if (has_area &&
        !(Contains(p.area().postal_codes(), c.postal_code()) && !c.postal_code().empty()) &&
        !(Contains(p.area().counties(), c.county()) && !c.county().empty())) {
      no.push_back("does not serve the subject's area");
    }
    const v1::Eligibility& e = p.eligibility();
    if (c.age() < e.min_age() || (e.max_age() != 0 && c.age() > e.max_age()))
      no.push_back("age outside its eligibility");
    if (!e.insurance_types().empty() && !Contains(e.insurance_types(), c.insurance_type()))
      no.push_back("insurance type not accepted");
    if (e.veterans_only() && !c.veteran()) no.push_back("serves veterans only");
    if (e.income_limit_cents() != 0 && c.income_cents() > e.income_limit_cents())
      no.push_back("income above its limit");
    auto slots = open_slots.find(a.agency_id());
    const int64_t open = slots == open_slots.end() ? 0 : slots->second;
    if (open <= 0) no.push_back(absl::StrCat("no open capacity for ", category));
    r.set_eligible(no.empty());
    if (!no.empty()) {
      for (std::string& why : no) r.add_reasons(std::move(why));
      out.push_back(std::move(r));
      continue;
    }
    const bool language = !c.language().empty() && Contains(p.languages(), c.language());
    r.set_score((language ? 1'000'000 : 0) +
                static_cast<int32_t>(std::min<int64_t>(open, 999'999)));
    r.add_reasons(absl::StrCat("offers ", category));
    r.add_reasons(has_area ? "serves the subject's area" : "serves every area");
    r.add_reasons(absl::StrCat(open, " open slots"));
    if (!c.language().empty())
      r.add_reasons(language ? absl::StrCat("speaks ", c.language())
                             : absl::StrCat("does not list ", c.language()));
    out.push_back(std::move(r));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const v1::RoutingCandidate& x, const v1::RoutingCandidate& y) {
                     if (x.eligible() != y.eligible()) return x.eligible();
                     if (x.score() != y.score()) return x.score() > y.score();
                     return x.agency_id() < y.agency_id();
                   });
  return out;
}

std::map<std::string, int64_t> OpenSlotsFor(const std::vector<v1::AgencyRecord>& agencies,
                                            const std::string& category) {
  std::map<std::string, int64_t> open;
  for (const v1::AgencyRecord& a : agencies) {
    for (const v1::CapacityEntry& c : a.capacity()) {
      if (c.service() == category) open[a.agency_id()] = directory::OpenSlots(c);
    }
  }
  return open;
}

}  // namespace careloop::referral
