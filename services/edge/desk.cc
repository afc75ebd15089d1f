#include "services/edge/desk.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/directory/agencies.h"
#include "services/referral/routing.h"
#include "services/referral/sections.h"
#include "services/trust/envelope.h"

namespace careloop::edge {
namespace {

constexpr char kSenderRole[] = "sender";
constexpr char kReceiverRole[] = "receiver";
constexpr char kEmergencyRole[] = "emergency";

// A party's role in a referral: its sender acts as a sender, anyone else
// (the recipient) as a receiver.
std::string PartyRole(const StaffMember& who, const std::string& sender_agency) {
  return sender_agency == who.agency_id ? kSenderRole : kReceiverRole;
}

// The role a consent change is recorded in: sender at a sending agency,
// receiver otherwise (both may record; DESIGN.md "Consent").
std::string RecorderRole(const StaffMember& who) {
  return Holds(who, kSenderRole) ? kSenderRole : kReceiverRole;
}

v1::ListReferralsRequest ListOf(v1::TaskStatus status) {
  v1::ListReferralsRequest req;
  req.set_status(status);
  return req;
}

}  // namespace

absl::StatusOr<std::pair<std::string, std::string>> SplitReferral(const std::string& referral) {
  const size_t slash = referral.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == referral.size() ||
      referral.find('/', slash + 1) != std::string::npos) {
    return absl::InvalidArgumentError("a referral is named <sending agency>/<referral id>");
  }
  return std::make_pair(referral.substr(0, slash), referral.substr(slash + 1));
}

v1::ReferralManifest ManifestOf(const NewReferral& r, const std::string& agency) {
  v1::ReferralManifest m;
  m.set_referral_id(r.referral_id.empty() ? absl::StrCat("r-", HexEncode(RandomBytes(6)))
                                          : r.referral_id);
  m.mutable_subject()->set_authority(absl::StrCat(agency, "/mrn"));
  m.mutable_subject()->set_value(r.mrn);
  m.set_service_category(r.service);
  m.set_reason(r.reason);
  m.set_priority(r.priority);
  m.set_purpose(r.purpose);
  if (!r.recipient.empty()) {
    m.mutable_routing()->set_recipient_agency(r.recipient);
  } else {
    m.mutable_routing()->mutable_criteria()->set_postal_code(r.postal_code);
    m.mutable_routing()->mutable_criteria()->set_language(r.language);
  }
  return m;
}

std::vector<v1::Section> SectionsOf(const NewReferral& r) {
  std::vector<v1::Section> sections;
  for (const SectionInput& in : r.sections) {
    v1::Section s;
    s.set_section_id(in.section_id);
    s.set_category(in.category);
    s.set_media_type(in.media_type);
    s.set_content(in.text);
    sections.push_back(std::move(s));
  }
  return sections;
}

Desk::Desk(HubClient* hub, const KeyCustody* keys, Clock* clock)
    : hub_(hub), keys_(keys), clock_(clock), signer_(hub, keys, clock) {
  CARELOOP_CHECK(hub_ != nullptr && keys_ != nullptr && clock_ != nullptr);
}

absl::StatusOr<std::string> Desk::Sign(const StaffMember& who,
                                       const google::protobuf::Message& payload,
                                       const std::string& role) {
  return signer_.Sign(who, payload, role);
}

absl::StatusOr<v1::SubmitReferralResponse> Desk::Send(const StaffMember& who,
                                                      const NewReferral& r) {
  if (r.mrn.empty()) return absl::InvalidArgumentError("give the person's record number (MRN)");
  if (r.recipient.empty() && r.postal_code.empty()) {
    return absl::InvalidArgumentError("choose an agency, or give a postal code to rank them by");
  }
  if (r.sections.empty())
    return absl::InvalidArgumentError("a referral needs at least one section");
  v1::ReferralManifest m = ManifestOf(r, who.agency_id);
  std::vector<v1::Section> sections = SectionsOf(r);
  ASSIGN_OR_RETURN(std::vector<v1::SectionDigest> digests,
                   referral::SealSections(&sections, referral::RandomBytes));
  for (v1::SectionDigest& d : digests) *m.add_sections() = std::move(d);
  v1::SubmitReferralRequest req;
  ASSIGN_OR_RETURN(*req.mutable_envelope(), Sign(who, m, kSenderRole));
  for (v1::Section& s : sections) *req.add_sections() = std::move(s);
  return hub_->SubmitReferral(req);
}

absl::StatusOr<v1::Receipt> Desk::Move(const StaffMember& who, const StatusMove& m) {
  ASSIGN_OR_RETURN(auto ids, SplitReferral(m.referral));
  v1::UpdateReferralStatus u;
  u.set_sender_agency(ids.first);
  u.set_referral_id(ids.second);
  u.set_status(m.status);
  u.set_expected_version(m.expected_version);
  if (!m.reason_code.empty() || !m.reason_text.empty()) {
    u.mutable_reason()->set_code(m.reason_code);
    u.mutable_reason()->set_text(m.reason_text);
  }
  if (!m.provided.empty() || !m.enrolment_status.empty()) {
    u.mutable_outcome()->set_provided(m.provided);
    u.mutable_outcome()->set_enrolment_status(m.enrolment_status);
  }
  // The sender moves its own referral (cancel); the recipient everything else.
  ASSIGN_OR_RETURN(std::string envelope, Sign(who, u, PartyRole(who, ids.first)));
  return hub_->UpdateReferralStatus(envelope);
}

absl::StatusOr<v1::ListReferralsResponse> Desk::Inbox(const StaffMember& who,
                                                      v1::TaskStatus status) {
  return hub_->Inbox(ListOf(status), ActingOf(who));
}

absl::StatusOr<v1::ListReferralsResponse> Desk::Sent(const StaffMember& who,
                                                     v1::TaskStatus status) {
  return hub_->Sent(ListOf(status), ActingOf(who));
}

absl::StatusOr<ReferralPage> Desk::Open(const StaffMember& who, const std::string& referral) {
  ASSIGN_OR_RETURN(auto ids, SplitReferral(referral));
  v1::GetReferralRequest get;
  get.set_referral(referral);
  ReferralPage page;
  ASSIGN_OR_RETURN(page.view, hub_->GetReferral(get, ActingOf(who)));
  v1::GetAgencyRequest sender;
  sender.set_agency_id(ids.first);
  ASSIGN_OR_RETURN(v1::AgencyRecord record, hub_->GetAgency(sender, ActingOf(who)));
  page.sender_keys.assign(record.keys().begin(), record.keys().end());
  page.author_keys[ids.first] = page.sender_keys;
  for (const v1::ThreadEntry& t : page.view.thread()) {
    if (page.author_keys.contains(t.by_agency())) continue;
    v1::GetAgencyRequest author;
    author.set_agency_id(t.by_agency());
    ASSIGN_OR_RETURN(v1::AgencyRecord a, hub_->GetAgency(author, ActingOf(who)));
    page.author_keys[t.by_agency()].assign(a.keys().begin(), a.keys().end());
  }
  return page;
}

absl::StatusOr<v1::PreviewDisclosureResponse> Desk::Preview(
    const StaffMember& who, const std::string& mrn, const std::string& recipient,
    const std::string& purpose, const std::vector<std::string>& categories) {
  if (mrn.empty()) return absl::InvalidArgumentError("give the person's record number (MRN)");
  v1::PreviewDisclosureRequest req;
  req.mutable_subject()->set_authority(absl::StrCat(who.agency_id, "/mrn"));
  req.mutable_subject()->set_value(mrn);
  req.set_recipient_agency(recipient);
  req.set_purpose(purpose);
  for (const std::string& c : categories) req.add_categories(c);
  return hub_->PreviewDisclosure(req, ActingOf(who));
}

absl::StatusOr<std::string> Desk::ResolvePerson(const StaffMember& who, const std::string& mrn) {
  if (mrn.empty()) return absl::InvalidArgumentError("give the person's record number (MRN)");
  v1::ResolveSubjectRequest req;
  v1::Identifier* id = req.add_identifiers();
  id->set_authority(absl::StrCat(who.agency_id, "/mrn"));
  id->set_value(mrn);
  ASSIGN_OR_RETURN(v1::ResolveSubjectResponse r, hub_->ResolveSubject(req, ActingOf(who)));
  return r.subject_id();
}

absl::StatusOr<std::string> Desk::RecordConsent(const StaffMember& who,
                                                const v1::Consent& consent) {
  v1::GrantConsent grant;
  *grant.mutable_consent() = consent;
  ASSIGN_OR_RETURN(std::string envelope, Sign(who, grant, RecorderRole(who)));
  ASSIGN_OR_RETURN(v1::SubmitEnvelopeResponse r, hub_->SubmitConsentChange(envelope));
  return r.assigned_id();
}

absl::StatusOr<v1::PostMessageResponse> Desk::Message(const StaffMember& who,
                                                      const std::string& referral,
                                                      const std::string& category,
                                                      const std::string& text) {
  ASSIGN_OR_RETURN(auto ids, SplitReferral(referral));
  if (text.empty()) return absl::InvalidArgumentError("the message is empty");
  std::vector<v1::Section> sections(1);
  sections[0].set_section_id("message");
  sections[0].set_category(category);
  sections[0].set_media_type("text/plain");
  sections[0].set_content(text);
  ASSIGN_OR_RETURN(std::vector<v1::SectionDigest> digests,
                   referral::SealSections(&sections, referral::RandomBytes));
  v1::ReferralMessage m;
  m.set_sender_agency(ids.first);
  m.set_referral_id(ids.second);
  for (v1::SectionDigest& d : digests) *m.add_sections() = std::move(d);
  v1::PostMessageRequest req;
  ASSIGN_OR_RETURN(*req.mutable_envelope(), Sign(who, m, PartyRole(who, ids.first)));
  *req.add_sections() = std::move(sections[0]);
  return hub_->PostMessage(req);
}

absl::StatusOr<v1::Receipt> Desk::ReportCapacity(const StaffMember& who, const std::string& service,
                                                 uint32_t open_slots) {
  v1::ReportCapacity c;
  c.set_agency_id(who.agency_id);
  c.set_service(service);
  c.set_open_slots(open_slots);
  ASSIGN_OR_RETURN(std::string envelope, Sign(who, c, kReceiverRole));
  return hub_->SubmitDirectoryChange(envelope);
}

absl::StatusOr<v1::AgencyRecord> Desk::OwnAgency(const StaffMember& who) {
  v1::GetAgencyRequest get;
  get.set_agency_id(who.agency_id);
  return hub_->GetAgency(get, ActingOf(who));
}

absl::StatusOr<std::string> Desk::RecordConsent(const StaffMember& who, const NewConsent& in) {
  if (in.categories.empty()) return absl::InvalidArgumentError("choose what the consent covers");
  if (!in.network && in.recipients.empty()) {
    return absl::InvalidArgumentError("choose the agencies, or the whole network");
  }
  if (in.evidence_sha256.size() != 32) {
    return absl::InvalidArgumentError("attach the signed consent form");
  }
  ASSIGN_OR_RETURN(std::string subject, ResolvePerson(who, in.mrn));
  v1::Consent c;
  c.set_subject_id(subject);
  c.mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
  v1::ConsentRule* rule = c.mutable_provision();
  rule->set_permit(true);
  if (in.network) rule->add_recipients()->set_network(true);
  for (const std::string& a : in.recipients) rule->add_recipients()->set_agency_id(a);
  for (const std::string& p : in.purposes) rule->add_purposes(p);
  for (const std::string& k : in.categories) rule->add_categories(k);
  if (in.until_unix_nanos != 0) {
    c.mutable_period()->set_start_unix_nanos(absl::ToUnixNanos(clock_->Now()));
    c.mutable_period()->set_end_unix_nanos(in.until_unix_nanos);
  }
  c.mutable_evidence()->set_sha256(in.evidence_sha256);
  c.mutable_evidence()->set_media_type(in.evidence_media_type);
  return RecordConsent(who, c);
}

absl::StatusOr<Desk::EmergencyAccess> Desk::BreakGlass(const StaffMember& who,
                                                       const std::string& mrn,
                                                       const std::vector<std::string>& categories,
                                                       const std::string& reason,
                                                       absl::Duration duration) {
  RETURN_IF_ERROR(RequireRole(who, kEmergencyRole));
  if (categories.empty()) return absl::InvalidArgumentError("choose what you need to see");
  if (reason.empty()) return absl::InvalidArgumentError("say why (it is reviewed)");
  if (duration < absl::ZeroDuration()) return absl::InvalidArgumentError("a duration is positive");
  ASSIGN_OR_RETURN(std::string subject, ResolvePerson(who, mrn));
  v1::BreakGlass b;
  b.set_subject_id(subject);
  for (const std::string& c : categories) b.add_categories(c);
  b.set_purpose("emergency-treatment");
  b.set_reason(reason);
  b.set_duration_seconds(absl::ToInt64Seconds(duration));
  const absl::Time at = clock_->Now();
  ASSIGN_OR_RETURN(std::string envelope, Sign(who, b, kEmergencyRole));
  ASSIGN_OR_RETURN(v1::SubmitEnvelopeResponse r, hub_->SubmitConsentChange(envelope));
  EmergencyAccess out;
  out.id = r.assigned_id();
  // What was asked; the hub's record holds the exact period (its clock).
  if (duration > absl::ZeroDuration()) out.until_unix_nanos = absl::ToUnixNanos(at + duration);
  return out;
}

absl::StatusOr<v1::ListConsentsResponse> Desk::Consents(const StaffMember& who,
                                                        const std::string& mrn) {
  ASSIGN_OR_RETURN(std::string subject, ResolvePerson(who, mrn));
  v1::ListConsentsRequest req;
  req.set_subject_id(subject);
  absl::StatusOr<v1::ListConsentsResponse> list = hub_->ListConsents(req, ActingOf(who));
  if (absl::IsPermissionDenied(list.status())) return v1::ListConsentsResponse();  // none visible
  return list;
}

absl::Status Desk::RevokeConsent(const StaffMember& who, const std::string& consent_id,
                                 const std::string& reason) {
  if (reason.empty()) return absl::InvalidArgumentError("say why the consent is revoked");
  v1::RevokeConsent r;
  r.set_consent_id(consent_id);
  r.set_reason(reason);
  ASSIGN_OR_RETURN(std::string envelope, Sign(who, r, RecorderRole(who)));
  return hub_->SubmitConsentChange(envelope).status();
}

absl::StatusOr<std::vector<v1::AgencyRecord>> Desk::Receivers(const StaffMember& who,
                                                              const std::string& service) {
  v1::SearchAgenciesRequest req;
  req.set_service(service);
  req.set_role(kReceiverRole);
  return hub_->SearchAgencies(req, ActingOf(who));
}

absl::StatusOr<std::vector<v1::AgencyRecord>> Desk::Recipients(const StaffMember& who,
                                                               const std::string& service) {
  ASSIGN_OR_RETURN(std::vector<v1::AgencyRecord> all, Receivers(who, service));
  std::vector<v1::AgencyRecord> out;
  for (v1::AgencyRecord& a : all) {
    const bool can = service.empty() ? a.active() && directory::Onboarded(a)
                                     : referral::CannotReceive(a, service).empty();
    if (can) out.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<std::vector<Desk::Ranked>> Desk::Candidates(const StaffMember& who,
                                                           const std::string& service,
                                                           const v1::RoutingCriteria& criteria) {
  RETURN_IF_ERROR(RequireRole(who, kSenderRole));
  if (service.empty()) return absl::InvalidArgumentError("choose the service needed");
  if (criteria.postal_code().empty() && criteria.county().empty()) {
    return absl::InvalidArgumentError("give the person's postal code");
  }
  ASSIGN_OR_RETURN(std::vector<v1::AgencyRecord> agencies, Receivers(who, service));
  std::map<std::string, std::string> names;
  for (const v1::AgencyRecord& a : agencies) names[a.agency_id()] = a.profile().display_name();
  std::vector<Ranked> out;
  for (v1::RoutingCandidate& c : referral::RankCandidates(
           agencies, service, criteria, referral::OpenSlotsFor(agencies, service))) {
    const std::string name = names[c.agency_id()];
    out.push_back(Ranked{std::move(c), name});
  }
  return out;
}

}  // namespace careloop::edge
