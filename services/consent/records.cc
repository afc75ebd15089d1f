#include "services/consent/records.h"

#include <initializer_list>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "services/names/names.h"
#include "services/trust/append.h"

namespace careloop::consent {
namespace {

using trust::AddEvent;
using trust::Expect;

std::string HashHex(std::initializer_list<absl::string_view> parts, size_t hex_chars) {
  return HexEncode(AsStringView(Sha256Parts(parts))).substr(0, hex_chars);
}

}  // namespace

// ---- Names and ids ----

const std::set<std::string>& KnownPurposes() {
  static const std::set<std::string> purposes = {
      "care-coordination", "treatment", "emergency-treatment", "payment", "operations", "research",
      "public-health",     "legal",     "subject-request"};
  return purposes;
}

namespace {

struct PurposeCodeRow {
  const char* purpose;
  const char* code;
  const char* display;
};

// careloop's purposes and HL7 v3 ActReason (the first row of a purpose is
// the code it is written as).
constexpr PurposeCodeRow kPurposeCodes[] = {
    {"care-coordination", "TREAT", "treatment"},
    {"care-coordination", "CAREMGT", "care management"},
    {"treatment", "TREAT", "treatment"},
    {"emergency-treatment", "ETREAT", "emergency treatment"},
    {"payment", "HPAYMT", "healthcare payment"},
    {"operations", "HOPERAT", "healthcare operations"},
    {"research", "HRESCH", "healthcare research"},
    {"public-health", "PUBHLTH", "public health"},
    {"legal", "HLEGAL", "legal"},
    {"subject-request", "PATRQT", "patient requested"},
};

}  // namespace

std::pair<std::string, std::string> PurposeOfUseCode(absl::string_view purpose) {
  for (const PurposeCodeRow& r : kPurposeCodes) {
    if (purpose == r.purpose) return {r.code, r.display};
  }
  return {"HOPERAT", std::string(purpose)};
}

std::string PurposeOfActReason(absl::string_view code) {
  // TREAT is treatment (care coordination is written as TREAT too).
  for (const PurposeCodeRow& r : kPurposeCodes) {
    if (code == r.code && !(code == "TREAT" && absl::string_view(r.purpose) != "treatment"))
      return r.purpose;
  }
  return "";
}

const std::set<std::string>& TreatmentPaymentOperations() {
  static const std::set<std::string> tpo = {"care-coordination", "treatment", "emergency-treatment",
                                            "payment", "operations"};
  return tpo;
}

std::string SubjectStream(absl::string_view id) { return names::stream::Subject(id); }
std::string ConsentStream(absl::string_view id) { return names::stream::Consent(id); }
std::string DisclosureStream(absl::string_view id) { return names::stream::Disclosure(id); }

std::string IdentifierStream(const v1::Identifier& id) {
  // Authority and value hold no NUL (ValidateIdentifier), so NUL separates.
  const absl::string_view nul("\0", 1);
  return names::stream::Identifier(
      HashHex({"careloop.v1.identifier", nul, id.authority(), nul, id.value()}, 64));
}

std::string ConsentIdFor(absl::string_view sender, absl::string_view message_id) {
  const absl::string_view nul("\0", 1);
  return absl::StrCat("c-", HashHex({"careloop.v1.consent-id", nul, sender, nul, message_id}, 20));
}

std::string BreakGlassIdFor(absl::string_view sender, absl::string_view message_id) {
  const absl::string_view nul("\0", 1);
  return absl::StrCat("bg-",
                      HashHex({"careloop.v1.break-glass-id", nul, sender, nul, message_id}, 20));
}

absl::StatusOr<v1::AppendRequest> DisclosureAppend(const v1::CheckConsentResponse& decision,
                                                   v1::DisclosureRecorded d) {
  if (d.categories().empty())
    return absl::InvalidArgumentError("a disclosure names at least one category");
  if (!d.recipient_agency().empty() && d.recipient_agency() != decision.recipient_agency()) {
    return absl::InvalidArgumentError("the disclosure's recipient is not the decision's");
  }
  if (!d.purpose().empty() && d.purpose() != decision.purpose()) {
    return absl::InvalidArgumentError("the disclosure's purpose is not the decision's");
  }
  std::set<std::string> consents;
  std::string break_glass;
  for (const std::string& category : d.categories()) {
    const v1::CategoryDecision* found = nullptr;
    for (const auto& c : decision.decisions()) {
      if (c.category() == category) found = &c;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the decision did not cover the category ", category));
    }
    if (!found->permit()) {
      return absl::PermissionDeniedError(
          absl::StrCat("the category ", category, " may not be disclosed: ", found->reason()));
    }
    consents.insert(found->consent_ids().begin(), found->consent_ids().end());
    if (!found->break_glass_id().empty()) break_glass = found->break_glass_id();
  }
  d.set_subject_id(decision.subject_id());
  d.set_recipient_agency(decision.recipient_agency());
  d.set_purpose(decision.purpose());
  d.clear_consent_ids();
  for (const std::string& c : consents) d.add_consent_ids(c);
  d.set_break_glass_id(break_glass);
  if (d.authority().empty()) d.set_authority(break_glass.empty() ? "consent" : "break-glass");
  v1::AppendRequest req;
  v1::EventInput* e =
      AddEvent(&req, DisclosureStream(decision.subject_id()), names::event::kDisclosureRecorded,
               decision.subject_id(), d.SerializeAsString());
  e->add_agencies(d.recipient_agency());
  if (!d.disclosing_agency().empty() && d.disclosing_agency() != d.recipient_agency())
    e->add_agencies(d.disclosing_agency());
  for (const v1::StreamVersion& v : decision.read_versions()) Expect(&req, v.stream(), v.version());
  return req;
}

}  // namespace careloop::consent
