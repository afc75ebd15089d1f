#include "services/consent/decision.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace careloop::consent {
namespace {

struct Request {
  const Recipient& recipient;
  const std::string& purpose;
  const std::string& category;
  absl::Time at;
};

bool InPeriod(const v1::Period& p, absl::Time at) {
  if (p.start_unix_nanos() != 0 && at < absl::FromUnixNanos(p.start_unix_nanos())) return false;
  if (p.end_unix_nanos() != 0 && at >= absl::FromUnixNanos(p.end_unix_nanos())) return false;
  return true;
}

bool RecipientMatches(const v1::RecipientSpec& spec, const Recipient& r) {
  switch (spec.recipient_case()) {
    case v1::RecipientSpec::kAgencyId:
      return spec.agency_id() == r.agency_id;
    case v1::RecipientSpec::kAgencyKind:
      return spec.agency_kind() == r.kind && r.kind != v1::AGENCY_KIND_UNSPECIFIED;
    case v1::RecipientSpec::kNetwork:
      return spec.network();
    default:
      return false;
  }
}

// Whether `rule` itself (its own, non-inherited dimensions) matches. Sets
// *names_category when the rule lists the request's category explicitly.
bool OwnDimensionsMatch(const v1::ConsentRule& rule, const Request& req, bool* names_category) {
  if (!rule.recipients().empty()) {
    bool any = false;
    for (const auto& r : rule.recipients()) any |= RecipientMatches(r, req.recipient);
    if (!any) return false;
  }
  if (!rule.purposes().empty() && std::find(rule.purposes().begin(), rule.purposes().end(),
                                            req.purpose) == rule.purposes().end()) {
    return false;
  }
  if (!rule.categories().empty()) {
    if (std::find(rule.categories().begin(), rule.categories().end(), req.category) ==
        rule.categories().end()) {
      return false;
    }
    *names_category = true;
  }
  if (rule.has_period() && !InPeriod(rule.period(), req.at)) return false;
  return true;
}

struct Match {
  bool permit = false;
  bool names_category = false;  // somewhere on the chain to this rule
  int depth = 0;
};

// The deepest matching rule under `rule` (which matches), depth-first.
Match Deepest(const v1::ConsentRule& rule, const Request& req, bool named, int depth) {
  Match best{rule.permit(), named, depth};
  for (const v1::ConsentRule& ex : rule.exceptions()) {
    bool ex_named = named;
    if (!OwnDimensionsMatch(ex, req, &ex_named)) continue;
    Match m = Deepest(ex, req, ex_named, depth + 1);
    // Deeper wins; between equally deep siblings, deny wins.
    if (m.depth > best.depth || (m.depth == best.depth && !m.permit)) best = m;
  }
  return best;
}

// What one consent says about one request: permit, deny, or nothing.
std::optional<bool> ConsentSays(const v1::Consent& c, const Request& req, std::string* why_not) {
  // A revoked consent applied until its revocation instant (a historical
  // question about an earlier time gets the answer of that time).
  const bool applied = c.status() == v1::CONSENT_ACTIVE ||
                       (c.status() == v1::CONSENT_REVOKED && c.revoked_unix_nanos() != 0);
  if (!applied) return std::nullopt;
  if (c.revoked_unix_nanos() != 0 && req.at >= absl::FromUnixNanos(c.revoked_unix_nanos()))
    return std::nullopt;
  if (!InPeriod(c.period(), req.at)) return std::nullopt;
  bool named = false;
  if (!OwnDimensionsMatch(c.provision(), req, &named)) return std::nullopt;
  Match m = Deepest(c.provision(), req, named, 0);
  if (m.permit && SensitiveCategories().contains(req.category) && !m.names_category) {
    *why_not = absl::StrCat("consent ", c.consent_id(), " does not name the sensitive category ",
                            req.category);
    return std::nullopt;
  }
  return m.permit;
}

}  // namespace

const std::set<std::string>& KnownCategories() {
  static const std::set<std::string> categories = {
      "demographics",      "contact",   "social-needs", "clinical",
      "behavioral-health", "sud-part2", "hiv-sti",      "reproductive-health"};
  return categories;
}

const std::set<std::string>& SensitiveCategories() {
  static const std::set<std::string> categories = {"behavioral-health", "sud-part2", "hiv-sti",
                                                   "reproductive-health"};
  return categories;
}

std::vector<CategoryDecision> Decide(const std::vector<v1::Consent>& consents,
                                     const Recipient& recipient, const std::string& purpose,
                                     const std::vector<std::string>& categories, absl::Time at) {
  std::vector<CategoryDecision> out;
  for (const std::string& category : categories) {
    CategoryDecision d;
    d.category = category;
    Request req{recipient, purpose, category, at};
    std::vector<std::string> permitting, denying, notes;
    for (const v1::Consent& c : consents) {
      std::string why_not;
      std::optional<bool> says = ConsentSays(c, req, &why_not);
      if (!why_not.empty()) notes.push_back(why_not);
      if (!says.has_value()) continue;
      (*says ? permitting : denying).push_back(c.consent_id());
    }
    if (!denying.empty()) {
      d.consent_ids = denying;
      d.reason = absl::StrCat(category, " to ", recipient.agency_id, " for ", purpose,
                              " is denied by consent ", absl::StrJoin(denying, ", "));
    } else if (!permitting.empty()) {
      d.permit = true;
      d.consent_ids = permitting;
      d.reason = absl::StrCat(category, " to ", recipient.agency_id, " for ", purpose,
                              " is permitted by consent ", absl::StrJoin(permitting, ", "));
    } else {
      d.reason = notes.empty()
                     ? absl::StrCat("no active consent covers ", category, " to ",
                                    recipient.agency_id, " for ", purpose)
                     : absl::StrCat(absl::StrJoin(notes, "; "), "; nothing else permits it");
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace careloop::consent
