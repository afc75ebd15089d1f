#include "services/names/names.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace careloop::names {

namespace payload {
const std::vector<std::string_view>& All() {
  static const std::vector<std::string_view> all = {
      kRegisterAgency,   kUpdateAgencyProfile,  kSetAgencyStatus,
      kAddAgencyKey,     kRevokeAgencyKey,      kSetActor,
      kRemoveActor,      kReportCapacity,       kLinkIdentifier,
      kMergeSubjects,    kGrantConsent,         kAmendConsent,
      kRevokeConsent,    kBreakGlass,           kReviewBreakGlass,
      kReferralManifest, kUpdateReferralStatus, kReferralMessage,
      kSetWebhook,       kReplayDeadLetters,    kSetIdentifierAuthority,
      kUnmergeSubjects};
  return all;
}
}  // namespace payload

namespace event {
const std::vector<std::string_view>& All() {
  static const std::vector<std::string_view> all = {kRegisterAgency,
                                                    kUpdateAgencyProfile,
                                                    kSetAgencyStatus,
                                                    kAddAgencyKey,
                                                    kRevokeAgencyKey,
                                                    kSetActor,
                                                    kRemoveActor,
                                                    kReportCapacity,
                                                    kSetIdentifierAuthority,
                                                    kLinkIdentifier,
                                                    kMergeSubjects,
                                                    kUnmergeSubjects,
                                                    kGrantConsent,
                                                    kAmendConsent,
                                                    kRevokeConsent,
                                                    kBreakGlass,
                                                    kReviewBreakGlass,
                                                    kSetWebhook,
                                                    kReplayDeadLetters,
                                                    kEnvelopeAccepted,
                                                    kSlotTaken,
                                                    kSlotReleased,
                                                    kSubjectCreated,
                                                    kIdentifierClaimed,
                                                    kSubjectMergedInto,
                                                    kSubjectUnmerged,
                                                    kConsentLocated,
                                                    kConsentRevocationNotice,
                                                    kBreakGlassInvoked,
                                                    kBreakGlassListed,
                                                    kDisclosureRecorded,
                                                    kReferralSubmitted,
                                                    kReferralSections,
                                                    kReferralRouted,
                                                    kRoutingOpened,
                                                    kRoutingSettled,
                                                    kDedupeOpened,
                                                    kDedupeClosed,
                                                    kReferralDelivered,
                                                    kReferralViewed,
                                                    kReferralDeadlineWarning,
                                                    kReferralUnassigned,
                                                    kStatusChanged,
                                                    kThreadMessage,
                                                    kThreadPosted,
                                                    kConsumerCreated,
                                                    kDeliveryWithheld,
                                                    kWebhookAgency,
                                                    kWebhookFailing,
                                                    kWebhookRecovered,
                                                    kWebhookDisabled,
                                                    kDeadLettersReplayed,
                                                    kAuditQueried,
                                                    kAuditExport,
                                                    kRecordAccessed};
  return all;
}
}  // namespace event

namespace stream {
std::string Agency(absl::string_view agency) { return absl::StrCat(kAgencyPrefix, agency); }
std::string Capacity(absl::string_view agency) { return absl::StrCat(kCapacityPrefix, agency); }
std::string Authority(absl::string_view authority) {
  return absl::StrCat(kAuthorityPrefix, authority);
}
std::string Message(absl::string_view sender, absl::string_view message_id) {
  return absl::StrCat(kMessagePrefix, sender, "/", message_id);
}
std::string Subject(absl::string_view id) { return absl::StrCat(kSubjectPrefix, id); }
std::string Consent(absl::string_view id) { return absl::StrCat(kConsentPrefix, id); }
std::string ConsentId(absl::string_view id) { return absl::StrCat(kConsentIdPrefix, id); }
std::string Disclosure(absl::string_view id) { return absl::StrCat(kDisclosurePrefix, id); }
std::string Identifier(absl::string_view digest_hex) {
  return absl::StrCat(kIdentifierPrefix, digest_hex);
}
std::string BreakGlass(absl::string_view id) { return absl::StrCat(kBreakGlassPrefix, id); }
std::string Referral(absl::string_view sender, absl::string_view referral_id) {
  return absl::StrCat(kReferralPrefix, sender, "/", referral_id);
}
std::string Referral(absl::string_view key) { return absl::StrCat(kReferralPrefix, key); }
std::string Thread(absl::string_view key) { return absl::StrCat(kThreadPrefix, key); }
std::string Dedupe(absl::string_view sender, absl::string_view subject,
                   absl::string_view category) {
  return absl::StrCat(kDedupePrefix, sender, "/", subject, "/", category);
}
std::string Consumers(absl::string_view agency) { return absl::StrCat(kConsumersPrefix, agency); }
std::string Notify(absl::string_view agency, absl::string_view consumer) {
  return absl::StrCat(kNotifyPrefix, agency, "/", consumer);
}
std::string Delivery(absl::string_view agency) { return absl::StrCat(kDeliveryPrefix, agency); }
std::string Webhook(absl::string_view agency) { return absl::StrCat(kWebhookPrefix, agency); }
std::string Audit(absl::string_view caller) { return absl::StrCat(kAuditPrefix, caller); }
std::string SubmitKey(absl::string_view sender, absl::string_view message_id) {
  return absl::StrCat(kSubmitKeyPrefix, sender, "/", message_id);
}

std::string ReferralKeyOf(absl::string_view stream) {
  for (absl::string_view prefix : {kReferralPrefix, kThreadPrefix}) {
    if (absl::ConsumePrefix(&stream, prefix)) return std::string(stream);
  }
  return std::string();
}

const std::vector<std::string_view>& AllPrefixes() {
  static const std::vector<std::string_view> all = {
      kAgencyPrefix,   kCapacityPrefix,  kAuthorityPrefix,  kMessagePrefix,    kSubjectPrefix,
      kConsentPrefix,  kConsentIdPrefix, kDisclosurePrefix, kIdentifierPrefix, kBreakGlassPrefix,
      kReferralPrefix, kThreadPrefix,    kDedupePrefix,     kConsumersPrefix,  kNotifyPrefix,
      kDeliveryPrefix, kWebhookPrefix,   kAuditPrefix,      kSubmitKeyPrefix};
  return all;
}
}  // namespace stream

}  // namespace careloop::names
