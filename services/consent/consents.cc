// Consents and decisions: validating, granting, amending and revoking
// consents, reading them, and deciding what may be disclosed.
#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/sha256.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/consent/consent_core.h"
#include "services/consent/internal.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::consent {

absl::Status ConsentCore::ValidateRule(const v1::ConsentRule& r, int depth, int* count,
                                       bool* names_part2) const {
  if (depth > kMaxRuleDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("consent rules nest at most ", kMaxRuleDepth, " deep"));
  }
  if (++*count > kMaxRules)
    return absl::InvalidArgumentError(absl::StrCat("a consent has at most ", kMaxRules, " rules"));
  for (const v1::RecipientSpec& s : r.recipients()) {
    switch (s.recipient_case()) {
      case v1::RecipientSpec::kAgencyId:
        if (!directory_->Get(s.agency_id()).has_value()) {
          return absl::NotFoundError(absl::StrCat("the consent names agency ", s.agency_id(),
                                                  ", which is not registered"));
        }
        break;
      case v1::RecipientSpec::kAgencyKind:
        if (s.agency_kind() == v1::AGENCY_KIND_UNSPECIFIED)
          return absl::InvalidArgumentError("a recipient kind must be given");
        break;
      case v1::RecipientSpec::kNetwork:
        if (!s.network()) return absl::InvalidArgumentError("a network recipient must be true");
        break;
      default:
        return absl::InvalidArgumentError("a recipient names an agency, a kind or the network");
    }
  }
  for (const std::string& p : r.purposes()) {
    if (!KnownPurposes().contains(p))
      return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", p, "'"));
  }
  for (const std::string& c : r.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
    if (c == "sud-part2" && r.permit()) *names_part2 = true;
  }
  if (r.has_period() && r.period().start_unix_nanos() != 0 && r.period().end_unix_nanos() != 0 &&
      r.period().end_unix_nanos() <= r.period().start_unix_nanos()) {
    return absl::InvalidArgumentError("a rule's period must end after it starts");
  }
  for (const v1::ConsentRule& ex : r.exceptions()) {
    if (ex.permit() == r.permit()) {
      return absl::InvalidArgumentError(
          "an exception must reverse its rule (a deny inside a permit, a permit inside a deny)");
    }
    RETURN_IF_ERROR(ValidateRule(ex, depth + 1, count, names_part2));
  }
  return absl::OkStatus();
}

absl::Status ConsentCore::ValidateConsent(const v1::Consent& c) const {
  switch (c.grantor().kind()) {
    case v1::GRANTOR_SUBJECT:
      break;
    case v1::GRANTOR_PARENT_GUARDIAN:
    case v1::GRANTOR_LEGAL_REPRESENTATIVE:
      if (c.grantor().relationship().empty()) {
        return absl::InvalidArgumentError(
            "a consent granted by a guardian or representative states the relationship");
      }
      break;
    default:
      return absl::InvalidArgumentError(
          "a consent names its grantor: the subject, a parent/guardian or a legal representative");
  }
  if (!c.provision().permit()) {
    return absl::InvalidArgumentError("a consent's root rule is a permit (denies are exceptions)");
  }
  int count = 0;
  bool names_part2 = false;
  RETURN_IF_ERROR(ValidateRule(c.provision(), 0, &count, &names_part2));
  const v1::Period& p = c.period();
  if (p.start_unix_nanos() != 0 && p.end_unix_nanos() != 0 &&
      p.end_unix_nanos() <= p.start_unix_nanos()) {
    return absl::InvalidArgumentError("a consent's period must end after it starts");
  }
  if (c.evidence().sha256().size() != 32 || c.evidence().media_type().empty()) {
    return absl::InvalidArgumentError(
        "a consent carries evidence: the SHA-256 (32 bytes) and media type of the signed form");
  }
  if (names_part2) {
    const v1::Part2Elements& e = c.part2();
    std::vector<std::string> missing;
    if (e.who_may_disclose().empty()) missing.push_back("who_may_disclose");
    if (e.information_description().empty()) missing.push_back("information_description");
    if (e.recipients_description().empty()) missing.push_back("recipients_description");
    if (e.purpose_description().empty()) missing.push_back("purpose_description");
    if (!e.right_to_revoke_acknowledged()) missing.push_back("right_to_revoke_acknowledged");
    if (e.expiration().empty()) missing.push_back("expiration");
    if (!e.signed_() || e.signed_unix_nanos() == 0) missing.push_back("signed/signed_unix_nanos");
    if (!missing.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a consent that permits sud-part2 needs every 42 CFR §2.31 element; missing: ",
          absl::StrJoin(missing, ", ")));
    }
  }
  if (!c.consent_id().empty()) return absl::InvalidArgumentError("the hub assigns consent ids");
  if (c.status() != v1::CONSENT_STATUS_UNSPECIFIED && c.status() != v1::CONSENT_ACTIVE)
    return absl::InvalidArgumentError("a new consent (or an amendment) is active");
  if (c.revoked_unix_nanos() != 0 || !c.revocation_reason().empty())
    return absl::InvalidArgumentError("revocation is its own message (RevokeConsent)");
  return absl::OkStatus();
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanGrant(const trust::VerifiedEnvelope& v,
                                                         absl::string_view bytes,
                                                         std::string* assigned_id) {
  const auto& p = static_cast<const v1::GrantConsent&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  const v1::Consent& c = p.consent();
  if (!c.recording_agency().empty() && c.recording_agency() != e.sender_agency())
    return absl::InvalidArgumentError("the recording agency is the envelope's sender");
  if (!c.recording_actor().empty() && c.recording_actor() != e.actor().user_id())
    return absl::InvalidArgumentError("the recording actor is the envelope's actor");
  ASSIGN_OR_RETURN(SubjectSet set, RelatedSubjects(e.sender_agency(), c.subject_id()));
  RETURN_IF_ERROR(ValidateConsent(c));
  *assigned_id = ConsentIdFor(e.sender_agency(), e.message_id());
  v1::AppendRequest req;
  AddEvent(&req, ConsentStream(set.survivor), names::event::kGrantConsent, set.survivor,
           std::string(bytes));
  v1::SubjectRef ref;
  ref.set_subject_id(set.survivor);
  const std::string locator = names::stream::ConsentId(*assigned_id);
  AddEvent(&req, locator, names::event::kConsentLocated, set.survivor, ref.SerializeAsString());
  Expect(&req, locator, 0);
  // A merge that lands first would leave the grant under a merged id: still
  // found (merged ids stay members), but keep the order plain.
  Expect(&req, SubjectStream(set.survivor), set.survivor_version);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanAmendOrRevoke(const trust::VerifiedEnvelope& v,
                                                                 absl::string_view bytes) {
  const v1::Envelope& e = v.envelope;
  const bool revoke = e.payload_type() == names::payload::kRevokeConsent;
  const std::string consent_id =
      revoke ? static_cast<const v1::RevokeConsent&>(*v.payload).consent_id()
             : static_cast<const v1::AmendConsent&>(*v.payload).consent_id();
  const bool compliance = IsCompliance(e.sender_agency());
  // A consent another agency recorded and one that does not exist are
  // answered alike, naming nothing but what the sender gave.
  const absl::Status not_yours = absl::PermissionDeniedError(absl::StrCat(
      "agency ", e.sender_agency(), " recorded no consent ", consent_id,
      "; only the recording agency or compliance may ", revoke ? "revoke" : "amend", " a consent"));
  absl::StatusOr<std::string> subject = LocateConsent(consent_id);
  if (absl::IsNotFound(subject.status()) && !compliance) return not_yours;
  RETURN_IF_ERROR(subject.status());
  ASSIGN_OR_RETURN(SubjectState st, Load(*subject, /*with_disclosures=*/revoke));
  auto it = st.consents.find(consent_id);
  if (it == st.consents.end()) return absl::DataLossError("a located consent is missing");
  const v1::ConsentRecord& r = it->second.record;
  if (r.consent().recording_agency() != e.sender_agency() && !compliance) return not_yours;
  if (r.consent().status() != v1::CONSENT_ACTIVE) {
    return absl::FailedPreconditionError(
        absl::StrCat("consent ", consent_id, " is no longer active (",
                     v1::ConsentStatus_Name(r.consent().status()), ")"));
  }
  v1::AppendRequest req;
  const std::string& survivor = st.subjects.survivor;
  AddEvent(&req, ConsentStream(survivor), trust::ShortTypeName(e.payload_type()), survivor,
           std::string(bytes));
  if (revoke) {
    const auto& p = static_cast<const v1::RevokeConsent&>(*v.payload);
    if (p.reason().empty()) return absl::InvalidArgumentError("a revocation states its reason");
    // One event concerning each agency that holds data under the consent:
    // that is how they are told.
    for (const std::string& holder : r.holders()) {
      v1::ConsentRevocationNotice n;
      n.set_consent_id(consent_id);
      n.set_subject_id(survivor);
      n.set_recipient_agency(holder);
      n.set_revoked_unix_nanos(absl::ToUnixNanos(clock_->Now()));
      n.set_revoked_by_agency(e.sender_agency());
      n.set_revoked_by_user(e.actor().user_id());
      AddEvent(&req, ConsentStream(survivor), names::event::kConsentRevocationNotice, survivor,
               n.SerializeAsString())
          ->add_agencies(holder);
    }
    // A disclosure landing meanwhile would make a holder that gets no notice.
    for (const v1::StreamVersion& d : st.disclosure_versions) Expect(&req, d.stream(), d.version());
  } else {
    const auto& p = static_cast<const v1::AmendConsent&>(*v.payload);
    v1::Consent amended = p.consent();
    amended.clear_subject_id();
    amended.clear_recording_agency();
    amended.clear_recording_actor();
    RETURN_IF_ERROR(ValidateConsent(amended));
  }
  for (const v1::StreamVersion& c : st.consent_versions) Expect(&req, c.stream(), c.version());
  Expect(&req, SubjectStream(survivor), st.subjects.survivor_version);
  return req;
}

absl::StatusOr<v1::ConsentRecord> ConsentCore::GetConsent(absl::string_view consent_id,
                                                          const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "GetConsent"));
  // A missing consent and one the caller may not read are answered alike.
  const absl::Status hidden = absl::PermissionDeniedError(absl::StrCat(
      "consent ", consent_id,
      " is visible to its recording agency, the agencies holding data under it, and compliance"));
  absl::StatusOr<std::string> subject = LocateConsent(consent_id);
  if (absl::IsNotFound(subject.status()) && !IsCompliance(caller)) return hidden;
  RETURN_IF_ERROR(subject.status());
  ASSIGN_OR_RETURN(SubjectState st, Load(*subject, /*with_disclosures=*/true));
  auto it = st.consents.find(std::string(consent_id));
  if (it == st.consents.end()) return absl::DataLossError("a located consent is missing");
  if (!MayRead(it->second.record, caller)) return hidden;
  v1::ConsentRecord r = it->second.record;
  const absl::Time now = clock_->Now();
  if (r.consent().status() == v1::CONSENT_ACTIVE && r.consent().period().end_unix_nanos() != 0 &&
      now >= absl::FromUnixNanos(r.consent().period().end_unix_nanos())) {
    r.mutable_consent()->set_status(v1::CONSENT_EXPIRED);
  }
  v1::GetConsentRequest read;
  read.set_consent_id(std::string(consent_id));
  RETURN_IF_ERROR(
      RecordRead(who, "ConsentService.GetConsent", read, st.subjects.survivor, "consent"));
  return r;
}

absl::StatusOr<v1::ListConsentsResponse> ConsentCore::ListConsents(
    const v1::ListConsentsRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "ListConsents"));
  const bool compliance = IsCompliance(caller);
  absl::StatusOr<SubjectState> st = Load(req.subject_id(), /*with_disclosures=*/true);
  if (absl::IsNotFound(st.status()) && !compliance) {
    // Not an oracle for which people the hub knows.
    return absl::PermissionDeniedError("no consent of this subject is visible to the caller");
  }
  RETURN_IF_ERROR(st.status());
  const absl::Time at =
      req.at_unix_nanos() != 0 ? absl::FromUnixNanos(req.at_unix_nanos()) : clock_->Now();
  v1::ListConsentsResponse resp;
  resp.set_subject_id(st->subjects.survivor);
  for (auto& [id, view] : st->consents) {
    if (!MayRead(view.record, caller)) continue;
    v1::ConsentRecord r = view.record;
    v1::Consent* c = r.mutable_consent();
    if (c->status() == v1::CONSENT_ACTIVE && c->period().end_unix_nanos() != 0 &&
        at >= absl::FromUnixNanos(c->period().end_unix_nanos())) {
      c->set_status(v1::CONSENT_EXPIRED);
    }
    *resp.add_consents() = std::move(r);
  }
  if (resp.consents().empty() && !compliance)
    return absl::PermissionDeniedError("no consent of this subject is visible to the caller");
  RETURN_IF_ERROR(
      RecordRead(who, "ConsentService.ListConsents", req, st->subjects.survivor, "consents"));
  return resp;
}

absl::StatusOr<v1::CheckConsentResponse> ConsentCore::Check(const v1::CheckConsentRequest& req,
                                                            const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Check"));
  ASSIGN_OR_RETURN(v1::CheckConsentResponse resp, Decide(req));
  RETURN_IF_ERROR(RecordRead(who, "ConsentService.Check", req));
  return resp;
}

absl::StatusOr<v1::CheckConsentResponse> ConsentCore::Decide(const v1::CheckConsentRequest& req) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(req.recipient_agency()));
  if (!KnownPurposes().contains(req.purpose()))
    return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", req.purpose(), "'"));
  if (req.categories().empty() || req.categories_size() > kMaxCategories)
    return absl::InvalidArgumentError("a check names 1 to 32 categories");
  for (const std::string& c : req.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
  }
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  std::optional<v1::AgencyRecord> recipient = directory_->Get(req.recipient_agency());
  if (!recipient.has_value())
    return absl::NotFoundError(absl::StrCat("no agency ", req.recipient_agency()));
  const absl::Time at =
      req.at_unix_nanos() != 0 ? absl::FromUnixNanos(req.at_unix_nanos()) : clock_->Now();
  ASSIGN_OR_RETURN(SubjectState st, Load(req.subject_id(), /*with_disclosures=*/false));
  std::vector<v1::Consent> consents;
  consents.reserve(st.consents.size());
  for (const auto& [id, view] : st.consents) consents.push_back(view.record.consent());
  std::vector<std::string> categories(req.categories().begin(), req.categories().end());
  std::vector<CategoryDecision> decided =
      consent::Decide(consents, Recipient{recipient->agency_id(), recipient->profile().kind()},
                      req.purpose(), categories, at);
  v1::CheckConsentResponse resp;
  resp.set_subject_id(st.subjects.survivor);
  resp.set_recipient_agency(req.recipient_agency());
  resp.set_purpose(req.purpose());
  resp.set_at_unix_nanos(absl::ToUnixNanos(at));
  for (CategoryDecision& d : decided) {
    v1::CategoryDecision* out = resp.add_decisions();
    out->set_category(d.category);
    if (!recipient->active()) {
      out->set_reason(absl::StrCat("agency ", recipient->agency_id(), " is suspended"));
      continue;
    }
    out->set_permit(d.permit);
    for (std::string& id : d.consent_ids) out->add_consent_ids(std::move(id));
    out->set_reason(std::move(d.reason));
    if (d.permit) continue;
    // A medical emergency: a break-glass by the recipient for this category
    // and purpose, in force at `at`, overrides the deny.
    for (const v1::BreakGlassRecord& bg : st.break_glass) {
      if (bg.agency_id() != recipient->agency_id() || bg.purpose() != req.purpose() ||
          !Contains(bg.categories(), d.category) ||
          at < absl::FromUnixNanos(bg.from_unix_nanos()) ||
          at >= absl::FromUnixNanos(bg.until_unix_nanos())) {
        continue;
      }
      out->set_permit(true);
      out->set_break_glass_id(bg.break_glass_id());
      out->set_reason(absl::StrCat(d.category, " to ", recipient->agency_id(),
                                   " is permitted by break-glass ", bg.break_glass_id(),
                                   " (medical emergency, until ",
                                   absl::FormatTime(absl::FromUnixNanos(bg.until_unix_nanos())),
                                   "), overriding: ", out->reason()));
      break;
    }
  }
  v1::StreamVersion* sv = resp.add_read_versions();
  sv->set_stream(SubjectStream(st.subjects.survivor));
  sv->set_version(st.subjects.survivor_version);
  for (v1::StreamVersion& c : st.consent_versions) *resp.add_read_versions() = std::move(c);
  sv = resp.add_read_versions();
  sv->set_stream(names::stream::Agency(recipient->agency_id()));
  sv->set_version(recipient->version());
  return resp;
}

}  // namespace careloop::consent
