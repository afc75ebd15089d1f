#include "services/edge/fhir_consent.h"

#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/consent/records.h"
#include "services/edge/fhir_resources.h"

namespace careloop::edge::fhir {
namespace {

constexpr char kConsentScope[] = "http://terminology.hl7.org/CodeSystem/consentscope";
constexpr char kActCode[] = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
constexpr char kActReason[] = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
constexpr char kPolicyCodes[] = "http://terminology.hl7.org/CodeSystem/consentpolicycodes";
constexpr char kParticipationType[] = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

// HL7 v3 ActCode sensitivity codes of careloop's sensitive categories.
const std::map<std::string, std::string>& SensitivityCategories() {
  static const std::map<std::string, std::string> m = {
      {"ETH", "sud-part2"},         {"HIV", "hiv-sti"},          {"STD", "hiv-sti"},
      {"PSY", "behavioral-health"}, {"MH", "behavioral-health"}, {"SEX", "reproductive-health"}};
  return m;
}

// A FHIR date or dateTime as Unix nanoseconds; a date's end is the next
// day's start (careloop's periods end exclusively; FHIR's include the day).
absl::StatusOr<int64_t> TimeOf(const json& v, bool end, const std::string& expression) {
  if (v.is_null()) return 0;
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%Y-%m-%d", s, absl::UTCTimeZone(), &t, &err))
    return absl::ToUnixNanos(end ? t + absl::Hours(24) : t);
  if (absl::ParseTime(absl::RFC3339_full, s, absl::UTCTimeZone(), &t, &err))
    return absl::ToUnixNanos(t);
  return Invalid(expression, "a date is YYYY-MM-DD or an RFC 3339 instant");
}

absl::Status ReadPeriod(const json& period, const std::string& at, v1::Period* out) {
  if (period.is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(int64_t start, TimeOf(Member(period, "start"), false, at + ".start"));
  ASSIGN_OR_RETURN(int64_t end, TimeOf(Member(period, "end"), true, at + ".end"));
  if (end != 0 && end <= start) return Invalid(at, "the period ends before it starts");
  out->set_start_unix_nanos(start);
  out->set_end_unix_nanos(end);
  return absl::OkStatus();
}

// Recipients: the actors in a recipient role (PRCP, IRCP, or no role),
// each an agency of the directory.
absl::Status ReadActors(const json& actors, const std::string& at, const Entries& entries,
                        v1::ConsentRule* rule) {
  if (!actors.is_array()) return absl::OkStatus();
  for (size_t i = 0; i < actors.size(); ++i) {
    const std::string here = absl::StrCat(at, ".actor[", i, "]");
    const json& role = Member(actors[i], "role");
    if (!role.is_null() && !HasCoding(role, kParticipationType, "PRCP") &&
        !HasCoding(role, kParticipationType, "IRCP")) {
      return Unprocessable(here + ".role",
                           "careloop records a consent's recipients (role PRCP or IRCP)");
    }
    const std::string agency = AgencyOf(Member(actors[i], "reference"), entries);
    if (agency.empty()) {
      return Unprocessable(here + ".reference",
                           "a recipient is an agency of the directory (an Organization)");
    }
    rule->add_recipients()->set_agency_id(agency);
  }
  return absl::OkStatus();
}

absl::Status ReadPurposes(const json& purposes, const std::string& at, v1::ConsentRule* rule) {
  if (!purposes.is_array()) return absl::OkStatus();
  for (size_t i = 0; i < purposes.size(); ++i) {
    const std::string purpose = Str(purposes[i], "system") == kActReason
                                    ? consent::PurposeOfActReason(Str(purposes[i], "code"))
                                    : std::string();
    if (purpose.empty()) {
      return Unprocessable(absl::StrCat(at, ".purpose[", i, "]"),
                           "a purpose of use careloop knows (v3 ActReason: TREAT, CAREMGT, "
                           "ETREAT, HPAYMT, HOPERAT, HRESCH, PUBHLTH, HLEGAL, PATRQT)");
    }
    rule->add_purposes(purpose);
  }
  return absl::OkStatus();
}

// Data categories: careloop's own (urn:careloop:category) in class or
// securityLabel, or a v3 sensitivity code in securityLabel.
absl::Status ReadCategories(const json& provision, const std::string& at, v1::ConsentRule* rule) {
  for (const char* field : {"class", "securityLabel"}) {
    const json& codings = Member(provision, field);
    if (!codings.is_array()) continue;
    for (size_t i = 0; i < codings.size(); ++i) {
      const std::string system = Str(codings[i], "system"), code = Str(codings[i], "code");
      std::string category;
      if (system == kCategorySystem) category = code;
      if (system == kActCode && std::string(field) == "securityLabel") {
        auto it = SensitivityCategories().find(code);
        if (it != SensitivityCategories().end()) category = it->second;
      }
      if (category.empty()) {
        return Unprocessable(absl::StrCat(at, ".", field, "[", i, "]"),
                             "careloop consents by data category (urn:careloop:category, or a "
                             "v3 sensitivity code: ETH, HIV, STD, PSY, MH, SEX)");
      }
      rule->add_categories(category);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadRule(const json& provision, const std::string& at, const Entries& entries,
                      bool parent_permit, int depth, v1::ConsentRule* rule) {
  if (depth > 4) return Unprocessable(at, "provisions nest at most four deep");
  const std::string type = Str(provision, "type");
  if (depth > 0 && type.empty())
    return Unprocessable(at + ".type", "a nested provision says permit or deny");
  rule->set_permit(type.empty() ? parent_permit : type == "permit");
  if (depth == 0 && !rule->permit()) {
    return Unprocessable(at + ".type",
                         "careloop records what a person permits: without consent it shares "
                         "nothing, so a deny (opt-out) at the root is already careloop's default");
  }
  if (provision.contains("data"))
    return Unprocessable(at + ".data", "careloop consents by data category, not by resource");
  RETURN_IF_ERROR(ReadPeriod(Member(provision, "period"), at + ".period", rule->mutable_period()));
  if (rule->period().start_unix_nanos() == 0 && rule->period().end_unix_nanos() == 0)
    rule->clear_period();
  RETURN_IF_ERROR(ReadActors(Member(provision, "actor"), at, entries, rule));
  RETURN_IF_ERROR(ReadPurposes(Member(provision, "purpose"), at, rule));
  RETURN_IF_ERROR(ReadCategories(provision, at, rule));
  const json& nested = Member(provision, "provision");
  if (nested.is_array()) {
    for (size_t i = 0; i < nested.size(); ++i) {
      RETURN_IF_ERROR(ReadRule(nested[i], absl::StrCat(at, ".provision[", i, "]"), entries,
                               rule->permit(), depth + 1, rule->add_exceptions()));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadGrantor(const json& consent, const Entries& entries, v1::Consent* c) {
  c->mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
  const json& performers = Member(consent, "performer");
  if (!performers.is_array()) return absl::OkStatus();
  for (const json& p : performers) {
    if (!absl::StartsWith(Str(p, "reference"), "RelatedPerson") &&
        !(entries.Resolve(p) != nullptr &&
          Str(*entries.Resolve(p), "resourceType") == "RelatedPerson")) {
      continue;
    }
    c->mutable_grantor()->set_kind(v1::GRANTOR_LEGAL_REPRESENTATIVE);
    if (const json* r = entries.Resolve(p); r != nullptr) {
      const json& rel = Member(*r, "relationship");
      if (std::vector<const json*> cs = Codings(rel); !cs.empty())
        c->mutable_grantor()->set_relationship(Str(*cs.front(), "code"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadEvidence(const json& consent, const ConsentEvidence& given, v1::Consent* c) {
  if (!given.sha256.empty()) {
    c->mutable_evidence()->set_sha256(given.sha256);
    c->mutable_evidence()->set_media_type(given.media_type);
    return absl::OkStatus();
  }
  const json& a = Member(consent, "sourceAttachment");
  std::string form;
  if (!absl::Base64Unescape(Str(a, "data"), &form) || form.empty()) {
    return Unprocessable("Consent.sourceAttachment",
                         "the signed form: sourceAttachment.data (careloop records its SHA-256)");
  }
  c->mutable_evidence()->set_sha256(ToBytes(Sha256(form)));
  c->mutable_evidence()->set_media_type(Str(a, "contentType").empty() ? "application/octet-stream"
                                                                      : Str(a, "contentType"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Consent> ReadFhirConsent(const json& consent, const Entries& entries,
                                            const ConsentEvidence& evidence) {
  if (!consent.is_object() || Str(consent, "resourceType") != "Consent")
    return Invalid("Consent", "a FHIR Consent");
  if (Str(consent, "status") != "active")
    return Unprocessable("Consent.status", "careloop records an active consent");
  if (!HasCoding(Member(consent, "scope"), kConsentScope, "patient-privacy")) {
    return Unprocessable("Consent.scope",
                         "careloop records privacy consents (scope patient-privacy)");
  }
  const json& policy = Member(consent, "policyRule");
  if (HasCoding(policy, kActCode, "OPTOUT")) {
    return Unprocessable("Consent.policyRule",
                         "an opt-out consent: without consent careloop shares nothing; record "
                         "what the person permits (OPTIN)");
  }
  if (!consent.contains("provision"))
    return Unprocessable("Consent.provision", "a consent says what it permits");
  v1::Consent c;
  c.set_status(v1::CONSENT_ACTIVE);
  c.set_hipaa_authorization(HasCoding(policy, kPolicyCodes, "hipaa-auth"));
  RETURN_IF_ERROR(ReadGrantor(consent, entries, &c));
  RETURN_IF_ERROR(ReadRule(consent["provision"], "Consent.provision", entries,
                           /*parent_permit=*/true, 0, c.mutable_provision()));
  // The consent's own validity is its root provision's period.
  if (c.provision().has_period()) {
    *c.mutable_period() = c.provision().period();
    c.mutable_provision()->clear_period();
  }
  RETURN_IF_ERROR(ReadEvidence(consent, evidence, &c));
  return c;
}

namespace {

// A careloop period as a FHIR Period (an unset end is open).
json PeriodOf(const v1::Period& period) {
  json out = json::object();
  if (period.start_unix_nanos() != 0) out["start"] = Instant(period.start_unix_nanos());
  if (period.end_unix_nanos() != 0) out["end"] = Instant(period.end_unix_nanos());
  return out;
}

json ProvisionOf(const v1::ConsentRule& r, bool root) {
  json p{{"type", r.permit() ? "permit" : "deny"}};
  if (root) p.erase("type");
  json actors = json::array();
  for (const v1::RecipientSpec& s : r.recipients()) {
    if (!s.has_agency_id()) continue;  // kinds and the network have no FHIR actor
    actors.push_back(json{{"role", Coding(kParticipationType, "PRCP")},
                          {"reference", AgencyReference(s.agency_id())}});
  }
  if (!actors.empty()) p["actor"] = actors;
  json purposes = json::array();
  for (const std::string& purpose : r.purposes()) {
    // CAREMGT, not TREAT, for care coordination: a consent read back must
    // permit exactly what it permitted.
    const std::string code =
        purpose == "care-coordination" ? "CAREMGT" : consent::PurposeOfUseCode(purpose).first;
    purposes.push_back(json{{"system", kActReason}, {"code", code}});
  }
  if (!purposes.empty()) p["purpose"] = purposes;
  json classes = json::array();
  for (const std::string& cat : r.categories())
    classes.push_back(json{{"system", kCategorySystem}, {"code", cat}});
  if (!classes.empty()) p["class"] = classes;
  if (r.has_period()) p["period"] = PeriodOf(r.period());
  json nested = json::array();
  for (const v1::ConsentRule& e : r.exceptions()) nested.push_back(ProvisionOf(e, false));
  if (!nested.empty()) p["provision"] = nested;
  return p;
}

}  // namespace

json FhirConsentOf(const v1::Consent& c, const json& patient) {
  const char* status = "active";
  if (c.status() == v1::CONSENT_REVOKED || c.revoked_unix_nanos() != 0) status = "inactive";
  if (c.status() == v1::CONSENT_EXPIRED) status = "inactive";
  if (c.status() == v1::CONSENT_ENTERED_IN_ERROR) status = "entered-in-error";
  json provision = ProvisionOf(c.provision(), true);
  if (c.has_period()) provision["period"] = PeriodOf(c.period());
  json out{{"resourceType", "Consent"},
           {"id", c.consent_id()},
           {"status", status},
           {"scope", Coding(kConsentScope, "patient-privacy")},
           {"category", json::array({Coding("http://loinc.org", "59284-0")})},
           {"patient", json{{"identifier", patient}}},
           {"policyRule", c.hipaa_authorization() ? Coding(kPolicyCodes, "hipaa-auth")
                                                  : Coding(kActCode, "OPTIN")},
           {"provision", provision}};
  if (!c.recording_agency().empty())
    out["organization"] = json::array({AgencyReference(c.recording_agency())});
  return out;
}

}  // namespace careloop::edge::fhir
