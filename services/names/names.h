// The one registry of the hub's names: reserved identities and roles, the
// signed payload types, the ledger's event types and its streams.
//
// Every name here is part of the ledger's format: events written today are
// read back years later by these exact strings, and monitors, verifiers and
// auditors outside the hub match them too. Nothing outside this file spells
// an event type or a stream prefix as a literal (tests/unit/names_test.cc and
// tools/check-names.sh hold the tree to that); tests may, on purpose, since
// they pin the wire names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace careloop::names {

// ---- identities and roles ----

// The hub itself signs onboarding: sender "hub", role "hub-admin", with the
// admin key from the hub's configuration (not from the ledger).
inline constexpr char kHubAgency[] = "hub";
inline constexpr char kHubAdminRole[] = "hub-admin";
// An agency's own administrator.
inline constexpr char kAgencyAdminRole[] = "admin";

// ---- signed payload types (an envelope's payload_type) ----
namespace payload {
// Directory.
inline constexpr char kRegisterAgency[] = "careloop.v1.RegisterAgency";
inline constexpr char kUpdateAgencyProfile[] = "careloop.v1.UpdateAgencyProfile";
inline constexpr char kSetAgencyStatus[] = "careloop.v1.SetAgencyStatus";
inline constexpr char kAddAgencyKey[] = "careloop.v1.AddAgencyKey";
inline constexpr char kRevokeAgencyKey[] = "careloop.v1.RevokeAgencyKey";
inline constexpr char kSetActor[] = "careloop.v1.SetActor";
inline constexpr char kRemoveActor[] = "careloop.v1.RemoveActor";
inline constexpr char kReportCapacity[] = "careloop.v1.ReportCapacity";
inline constexpr char kSetIdentifierAuthority[] = "careloop.v1.SetIdentifierAuthority";
// Consent.
inline constexpr char kLinkIdentifier[] = "careloop.v1.LinkIdentifier";
inline constexpr char kMergeSubjects[] = "careloop.v1.MergeSubjects";
inline constexpr char kUnmergeSubjects[] = "careloop.v1.UnmergeSubjects";
inline constexpr char kGrantConsent[] = "careloop.v1.GrantConsent";
inline constexpr char kAmendConsent[] = "careloop.v1.AmendConsent";
inline constexpr char kRevokeConsent[] = "careloop.v1.RevokeConsent";
inline constexpr char kBreakGlass[] = "careloop.v1.BreakGlass";
inline constexpr char kReviewBreakGlass[] = "careloop.v1.ReviewBreakGlass";
// Referrals.
inline constexpr char kReferralManifest[] = "careloop.v1.ReferralManifest";
inline constexpr char kUpdateReferralStatus[] = "careloop.v1.UpdateReferralStatus";
inline constexpr char kReferralMessage[] = "careloop.v1.ReferralMessage";
// Notification.
inline constexpr char kSetWebhook[] = "careloop.v1.SetWebhook";
inline constexpr char kReplayDeadLetters[] = "careloop.v1.ReplayDeadLetters";

// Every signed payload type above, for tests and documentation.
const std::vector<std::string_view>& All();
}  // namespace payload

// ---- event types (an event header's type) ----
//
// An event that holds a signed envelope is named by the payload's short type
// name (trust::ShortTypeName): "careloop.v1.GrantConsent" -> "GrantConsent".
namespace event {
// Signed changes, as stored.
inline constexpr char kRegisterAgency[] = "RegisterAgency";
inline constexpr char kUpdateAgencyProfile[] = "UpdateAgencyProfile";
inline constexpr char kSetAgencyStatus[] = "SetAgencyStatus";
inline constexpr char kAddAgencyKey[] = "AddAgencyKey";
inline constexpr char kRevokeAgencyKey[] = "RevokeAgencyKey";
inline constexpr char kSetActor[] = "SetActor";
inline constexpr char kRemoveActor[] = "RemoveActor";
inline constexpr char kReportCapacity[] = "ReportCapacity";
inline constexpr char kSetIdentifierAuthority[] = "SetIdentifierAuthority";
inline constexpr char kLinkIdentifier[] = "LinkIdentifier";
inline constexpr char kMergeSubjects[] = "MergeSubjects";
inline constexpr char kUnmergeSubjects[] = "UnmergeSubjects";
inline constexpr char kGrantConsent[] = "GrantConsent";
inline constexpr char kAmendConsent[] = "AmendConsent";
inline constexpr char kRevokeConsent[] = "RevokeConsent";
inline constexpr char kBreakGlass[] = "BreakGlass";
inline constexpr char kReviewBreakGlass[] = "ReviewBreakGlass";
inline constexpr char kSetWebhook[] = "SetWebhook";
inline constexpr char kReplayDeadLetters[] = "ReplayDeadLetters";
// The marker of an accepted envelope, right after the event that holds it.
inline constexpr char kEnvelopeAccepted[] = "EnvelopeAccepted";
// Directory, hub-written.
inline constexpr char kSlotTaken[] = "SlotTaken";
inline constexpr char kSlotReleased[] = "SlotReleased";
// Subjects and consent, hub-written.
inline constexpr char kSubjectCreated[] = "SubjectCreated";
inline constexpr char kIdentifierClaimed[] = "IdentifierClaimed";
inline constexpr char kSubjectMergedInto[] = "SubjectMergedInto";
inline constexpr char kSubjectUnmerged[] = "SubjectUnmerged";
inline constexpr char kConsentLocated[] = "ConsentLocated";
inline constexpr char kConsentRevocationNotice[] = "ConsentRevocationNotice";
inline constexpr char kBreakGlassInvoked[] = "BreakGlassInvoked";
inline constexpr char kBreakGlassListed[] = "BreakGlassListed";
inline constexpr char kDisclosureRecorded[] = "DisclosureRecorded";
// Referrals.
inline constexpr char kReferralSubmitted[] = "ReferralSubmitted";
inline constexpr char kReferralSections[] = "ReferralSections";
inline constexpr char kReferralRouted[] = "ReferralRouted";
inline constexpr char kRoutingOpened[] = "RoutingOpened";
inline constexpr char kRoutingSettled[] = "RoutingSettled";
inline constexpr char kDedupeOpened[] = "DedupeOpened";
inline constexpr char kDedupeClosed[] = "DedupeClosed";
inline constexpr char kReferralDelivered[] = "ReferralDelivered";
inline constexpr char kReferralViewed[] = "ReferralViewed";
inline constexpr char kReferralDeadlineWarning[] = "ReferralDeadlineWarning";
inline constexpr char kReferralUnassigned[] = "ReferralUnassigned";
inline constexpr char kStatusChanged[] = "StatusChanged";
inline constexpr char kThreadMessage[] = "ThreadMessage";
inline constexpr char kThreadPosted[] = "ThreadPosted";
// Delivery.
inline constexpr char kConsumerCreated[] = "ConsumerCreated";
inline constexpr char kDeliveryWithheld[] = "DeliveryWithheld";
inline constexpr char kWebhookAgency[] = "WebhookAgency";
inline constexpr char kWebhookFailing[] = "WebhookFailing";
inline constexpr char kWebhookRecovered[] = "WebhookRecovered";
inline constexpr char kWebhookDisabled[] = "WebhookDisabled";
inline constexpr char kDeadLettersReplayed[] = "DeadLettersReplayed";
// Audit.
inline constexpr char kAuditQueried[] = "AuditQueried";
inline constexpr char kAuditExport[] = "AuditExport";
inline constexpr char kRecordAccessed[] = "RecordAccessed";

// Every event type above, for tests and documentation.
const std::vector<std::string_view>& All();
}  // namespace event

// ---- streams ----
//
// A stream is "<prefix><key>"; the builders below are the only places a
// stream name is put together.
namespace stream {
inline constexpr char kAgencyPrefix[] = "agency/";
inline constexpr char kCapacityPrefix[] = "capacity/";
inline constexpr char kAuthorityPrefix[] = "authority/";
inline constexpr char kMessagePrefix[] = "msg/";
inline constexpr char kSubjectPrefix[] = "subject/";
inline constexpr char kConsentPrefix[] = "consent/";
inline constexpr char kConsentIdPrefix[] = "consent-id/";
inline constexpr char kDisclosurePrefix[] = "disclosure/";
inline constexpr char kIdentifierPrefix[] = "ident/";
inline constexpr char kBreakGlassPrefix[] = "breakglass/";
inline constexpr char kReferralPrefix[] = "referral/";
inline constexpr char kThreadPrefix[] = "thread/";
inline constexpr char kDedupePrefix[] = "dedupe/";
inline constexpr char kConsumersPrefix[] = "consumers/";
inline constexpr char kNotifyPrefix[] = "notify/";
inline constexpr char kDeliveryPrefix[] = "delivery/";
inline constexpr char kWebhookPrefix[] = "webhook/";
inline constexpr char kAuditPrefix[] = "audit/";
// Single streams.
inline constexpr char kBreakGlassList[] = "breakglass";  // every break-glass, for review
inline constexpr char kRoutingIndex[] = "routing-open";  // open routings; escalation reads it
inline constexpr char kWebhookIndex[] = "webhooks";      // one WebhookAgency per agency
// Ledger idempotency keys of referral submissions.
inline constexpr char kSubmitKeyPrefix[] = "submit/";

std::string Agency(absl::string_view agency);
std::string Capacity(absl::string_view agency);
std::string Authority(absl::string_view authority);
std::string Message(absl::string_view sender, absl::string_view message_id);
std::string Subject(absl::string_view subject_id);
std::string Consent(absl::string_view subject_id);
std::string ConsentId(absl::string_view consent_id);
std::string Disclosure(absl::string_view subject_id);
// `digest_hex` is a keyed or salted digest of the identifier, never its value.
std::string Identifier(absl::string_view digest_hex);
std::string BreakGlass(absl::string_view break_glass_id);
// A referral's key is "<sender>/<referral id>".
std::string Referral(absl::string_view sender, absl::string_view referral_id);
std::string Referral(absl::string_view key);
std::string Thread(absl::string_view referral_key);
std::string Dedupe(absl::string_view sender, absl::string_view subject, absl::string_view category);
std::string Consumers(absl::string_view agency);
std::string Notify(absl::string_view agency, absl::string_view consumer);
std::string Delivery(absl::string_view agency);
std::string Webhook(absl::string_view agency);
std::string Audit(absl::string_view caller);
std::string SubmitKey(absl::string_view sender, absl::string_view message_id);

// The referral key of a referral/ or thread/ stream; empty for any other.
std::string ReferralKeyOf(absl::string_view stream);
// Every prefix above, for tests and documentation.
const std::vector<std::string_view>& AllPrefixes();
}  // namespace stream

}  // namespace careloop::names
