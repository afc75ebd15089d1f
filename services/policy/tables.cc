// The authorization tables, one per service: every RPC, and for an RPC that
// carries a signed envelope every payload type it accepts. An entry not
// here is refused (policy::Gate). docs/SECURITY.md shows these tables.
#include "services/names/names.h"
#include "services/policy/policy.h"

namespace careloop::policy {
namespace {

namespace p = names::payload;

constexpr uint32_t kAgencyOrCompliance = kAgency | kCompliance;
const char kSender[] = "sender";
const char kReceiver[] = "receiver";
const char kEmergency[] = "emergency";

Rule Call(std::string method, uint32_t parties, std::string object_rule) {
  return Rule{std::move(method), "", parties, {}, std::move(object_rule)};
}
Rule Signed(std::string method, std::string payload_type, uint32_t parties,
            std::set<std::string> actor_roles, std::string object_rule) {
  return Rule{std::move(method), std::move(payload_type), parties, std::move(actor_roles),
              std::move(object_rule)};
}

Table MakeLedger() {
  const char* kInternal = "internal: served on the ledger's own listener only";
  std::vector<Rule> r;
  for (const char* m :
       {"Append", "Read", "ReadStream", "ReadIndex", "GetStreamVersion", "Tail", "GetHead",
        "ProveInclusion", "ProveConsistency", "GetReceipt", "GetCursor", "Backup"}) {
    r.push_back(Call(m, kHubService, kInternal));
  }
  return Table("LedgerService", std::move(r));
}

Table MakeDirectory() {
  std::vector<Rule> r;
  for (const char* t : {p::kRegisterAgency, p::kSetAgencyStatus, p::kAddAgencyKey,
                        p::kRevokeAgencyKey, p::kSetIdentifierAuthority}) {
    r.push_back(Signed("Submit", t, kHubAdmin, {names::kHubAdminRole}, "-"));
  }
  for (const char* t : {p::kUpdateAgencyProfile, p::kSetActor, p::kRemoveActor}) {
    r.push_back(Signed("Submit", t, kHubAdmin | kAgency,
                       {names::kHubAdminRole, names::kAgencyAdminRole},
                       "an agency changes its own record only"));
  }
  r.push_back(Signed("Submit", p::kReportCapacity, kHubAdmin | kAgency,
                     {names::kHubAdminRole, names::kAgencyAdminRole, kReceiver},
                     "an agency reports its own capacity only"));
  r.push_back(Call("GetReceipt", kAgency | kHubAdmin,
                   "an agency its own envelopes' receipts; a hub admin those signed as hub"));
  r.push_back(Call("GetAgency", kAgency | kHubAdmin,
                   "a confidential address only to the agency itself and hub admins"));
  r.push_back(Call("SearchAgencies", kAgency | kHubAdmin,
                   "confidential addresses only to the agency itself and hub admins"));
  return Table("DirectoryService", std::move(r));
}

Table MakeConsent() {
  const std::set<std::string> kRecorders = {kSender, kReceiver, names::kAgencyAdminRole,
                                            kComplianceRole};
  const std::string kRelationship =
      "an agency with a relationship to the subject (an identifier it linked itself, of an "
      "authority it holds, or an open referral about the subject), or compliance on evidence";
  const std::string kRecorder = "the agency that recorded the consent, or compliance";
  std::vector<Rule> r;
  r.push_back(Signed("Submit", p::kLinkIdentifier, kAgency,
                     {kSender, kReceiver, names::kAgencyAdminRole},
                     "the sender holds the identifier's authority and has a relationship to "
                     "the subject"));
  r.push_back(Signed("Submit", p::kMergeSubjects, kAgencyOrCompliance,
                     {names::kAgencyAdminRole, kComplianceRole},
                     "compliance, or an agency holding identifiers on both subjects"));
  r.push_back(Signed("Submit", p::kUnmergeSubjects, kCompliance, {kComplianceRole},
                     "compliance; the merge's history is kept"));
  r.push_back(Signed("Submit", p::kGrantConsent, kAgencyOrCompliance, kRecorders, kRelationship));
  r.push_back(Signed("Submit", p::kAmendConsent, kAgencyOrCompliance, kRecorders, kRecorder));
  r.push_back(Signed("Submit", p::kRevokeConsent, kAgencyOrCompliance, kRecorders, kRecorder));
  r.push_back(Signed("Submit", p::kBreakGlass, kAgency, {kEmergency},
                     "an agency holding the agency role emergency"));
  r.push_back(Signed("Submit", p::kReviewBreakGlass, kCompliance, {kComplianceRole}, "-"));
  r.push_back(Call("ResolveSubject", kAgency,
                   "identifiers of authorities the caller holds only (compliance: any, to look "
                   "up, never to create; recorded as a read); a foreign and an unknown "
                   "identifier are answered alike"));
  r.push_back(Call("GetConsent", kAgencyOrCompliance,
                   "the recording agency, the agencies holding data under it, or compliance; a "
                   "missing and a hidden consent are answered alike; recorded as a read"));
  r.push_back(Call("ListConsents", kAgencyOrCompliance,
                   "the consents the caller may read (as GetConsent); recorded as a read"));
  r.push_back(Call("Check", kCompliance, "recorded as a read"));
  r.push_back(Call("PreviewDisclosure", kAgency,
                   "a person the caller names by an identifier of an authority of its own (not "
                   "a shared one) and has a relationship with; per category permit or deny, no "
                   "consent ids; recorded as a read"));
  r.push_back(Call("DisclosureReport", kCompliance, "recorded as a read"));
  r.push_back(Call("ListBreakGlass", kCompliance, "recorded as a read"));
  return Table("ConsentService", std::move(r));
}

Table MakeReferral() {
  std::vector<Rule> r;
  r.push_back(Signed("Submit", p::kReferralManifest, kAgency, {kSender},
                     "the referral is the sender's own"));
  r.push_back(Signed("UpdateStatus", p::kUpdateReferralStatus, kAgency, {kSender, kReceiver},
                     "the referral's sender or current recipient, each its own transitions"));
  r.push_back(Call("Get", kAgency,
                   "the sender, and current and former recipients, each shown only what was "
                   "disclosed to it; recorded as a read"));
  r.push_back(Call("Sent", kAgency, "the caller's own referrals; recorded as a read"));
  r.push_back(Call("Inbox", kAgency, "referrals routed to the caller; recorded as a read"));
  r.push_back(Signed("PostMessage", p::kReferralMessage, kAgency, {kSender, kReceiver},
                     "the referral's sender or current recipient"));
  return Table("ReferralService", std::move(r));
}

Table MakeNotification() {
  const std::string kOwn = "the caller's own consumers";
  std::vector<Rule> r;
  r.push_back(Call("CreateConsumer", kAgency, kOwn));
  r.push_back(Call("Subscribe", kAgency, kOwn));
  r.push_back(Call("Ack", kAgency, kOwn));
  r.push_back(Call("Status", kAgency, kOwn));
  for (const char* t : {p::kSetWebhook, p::kReplayDeadLetters}) {
    r.push_back(Signed("SubmitWebhookChange", t, kAgency | kHubAdmin,
                       {names::kAgencyAdminRole, names::kHubAdminRole},
                       "an agency its own webhook; a hub admin any"));
  }
  r.push_back(
      Call("ListDeadLetters", kAgency | kHubAdmin, "an agency its own; a hub admin any agency's"));
  r.push_back(Call("TestWebhook", kAgency, "the caller's own webhook"));
  r.push_back(Call("WebhookKey", kAgency | kHubAdmin, "public: the key that signs webhooks"));
  return Table("NotificationService", std::move(r));
}

Table MakeAudit() {
  std::vector<Rule> r;
  for (const char* m : {"Query", "Trail", "Report", "Export", "FhirAuditEvents"}) {
    r.push_back(Call(m, kCompliance, "recorded as a read"));
  }
  r.push_back(Call("Head", kAgencyOrCompliance | kHubAdmin, "public: the signed head"));
  r.push_back(Call("Consistency", kAgencyOrCompliance | kHubAdmin, "public: hashes only"));
  r.push_back(Call("Access", kAgencyOrCompliance,
                   "compliance: every agency's reads; an agency: its own staff's reads and "
                   "changes only; recorded as a read"));
  r.push_back(Call("Figures", kAgencyOrCompliance | kHubAdmin,
                   "an agency: the referrals it sent and the offers it received; a hub admin: "
                   "the network; counts from 1 to 10 withheld; no person or referral named"));
  r.push_back(Call("Inclusion", kAgencyOrCompliance,
                   "an agency its own events; compliance any; a foreign and a missing seq are "
                   "answered alike"));
  return Table("AuditService", std::move(r));
}

}  // namespace

// Each table is built once, on first use, and never destroyed.
template <Table (*Make)()>
const Table& Once() {
  static const Table* t = new Table(Make());
  return *t;
}

const Table& LedgerTable() { return Once<MakeLedger>(); }
const Table& DirectoryTable() { return Once<MakeDirectory>(); }
const Table& ConsentTable() { return Once<MakeConsent>(); }
const Table& ReferralTable() { return Once<MakeReferral>(); }
const Table& NotificationTable() { return Once<MakeNotification>(); }
const Table& AuditTable() { return Once<MakeAudit>(); }

const std::vector<const Table*>& AllTables() {
  static const std::vector<const Table*>* all =
      new std::vector<const Table*>{&LedgerTable(),   &DirectoryTable(),    &ConsentTable(),
                                    &ReferralTable(), &NotificationTable(), &AuditTable()};
  return *all;
}

}  // namespace careloop::policy
