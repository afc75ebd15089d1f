// The console's actions (DESIGN.md, "The agency edge"), without HTTP: what
// a signed-in staff member of an agency the edge serves can do. Each change
// is an envelope signed with the agency's key from custody, naming the
// staff member as its actor with the role the change needs (which the
// member must hold: the edge adds no power); each read is made as the
// agency, naming the member. The hub decides everything else.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/directory.pb.h"
#include "careloop/v1/referral.pb.h"
#include "services/edge/hub_client.h"
#include "services/edge/key_custody.h"
#include "services/edge/signer.h"
#include "services/edge/staff_accounts.h"

namespace careloop::edge {

// One section of a new referral, as a person types it.
struct SectionInput {
  std::string section_id;
  std::string category;  // a consent data category
  std::string text;
  std::string media_type = "text/plain";
};

struct NewReferral {
  std::string referral_id;  // "" : the edge picks one
  std::string mrn;          // the person's record number at the sending agency
  std::string service;      // a directory service code
  std::string reason;       // coded, non-sensitive
  v1::ReferralPriority priority = v1::ROUTINE;
  std::string purpose = "care-coordination";
  std::string recipient;  // an agency id; or "" with a postal code (ranked)
  std::string postal_code;
  std::string language;  // preferred, with a postal code
  std::vector<SectionInput> sections;
};

// The signed manifest's content and the sections of a new referral sent by
// `agency` (the person by the agency's record number), before sealing. One
// place for the desk and the CLI's FHIR send.
v1::ReferralManifest ManifestOf(const NewReferral& r, const std::string& agency);
std::vector<v1::Section> SectionsOf(const NewReferral& r);

// A consent the person gave, as the recording staff member enters it.
struct NewConsent {
  std::string mrn;
  std::vector<std::string> categories;  // data categories it permits
  bool network = false;                 // to any agency of the network
  std::vector<std::string> recipients;  // or to these agencies
  std::vector<std::string> purposes;    // e.g. care-coordination
  int64_t until_unix_nanos = 0;         // 0: no end
  std::string evidence_sha256;          // of the signed form (32 bytes)
  std::string evidence_media_type;
};

struct StatusMove {
  std::string referral;  // "<sender>/<referral id>"
  v1::TaskStatus status = v1::TASK_STATUS_UNSPECIFIED;
  std::string reason_code, reason_text;
  std::string provided, enrolment_status;  // with completed
  uint64_t expected_version = 0;           // 0: whatever the referral's is now
};

// A referral as the browser needs it to check it itself: the view (with the
// signed manifest envelope and the sections) and the sender's keys as the
// directory has them.
struct ReferralPage {
  v1::ReferralView view;
  std::vector<v1::AgencyKey> sender_keys;
  // The keys of every agency that wrote in the thread (the sender's too).
  std::map<std::string, std::vector<v1::AgencyKey>> author_keys;
};

class Desk {
 public:
  Desk(HubClient* hub, const KeyCustody* keys, Clock* clock);

  absl::StatusOr<v1::SubmitReferralResponse> Send(const StaffMember& who, const NewReferral& r);
  absl::StatusOr<v1::Receipt> Move(const StaffMember& who, const StatusMove& m);
  absl::StatusOr<v1::ListReferralsResponse> Inbox(const StaffMember& who, v1::TaskStatus status);
  absl::StatusOr<v1::ListReferralsResponse> Sent(const StaffMember& who, v1::TaskStatus status);
  absl::StatusOr<ReferralPage> Open(const StaffMember& who, const std::string& referral);
  // What consent would let `recipient` see of the person with this record
  // number, per category, before anything is sent.
  absl::StatusOr<v1::PreviewDisclosureResponse> Preview(const StaffMember& who,
                                                        const std::string& mrn,
                                                        const std::string& recipient,
                                                        const std::string& purpose,
                                                        const std::vector<std::string>& categories);
  // The hub's id of the person with this record number at `who`'s agency
  // (a new person the first time).
  absl::StatusOr<std::string> ResolvePerson(const StaffMember& who, const std::string& mrn);
  // Records a consent the person gave (`who` must hold a recorder role);
  // returns the consent id.
  absl::StatusOr<std::string> RecordConsent(const StaffMember& who, const v1::Consent& consent);
  absl::StatusOr<std::string> RecordConsent(const StaffMember& who, const NewConsent& consent);
  // The person's consents `who`'s agency may see (none: an empty list).
  absl::StatusOr<v1::ListConsentsResponse> Consents(const StaffMember& who, const std::string& mrn);
  absl::Status RevokeConsent(const StaffMember& who, const std::string& consent_id,
                             const std::string& reason);
  // A message in the referral's thread: one section of `category`, signed
  // by `who` as the referral's sender or recipient; consent decides what the
  // other party gets, as for the referral.
  absl::StatusOr<v1::PostMessageResponse> Message(const StaffMember& who,
                                                  const std::string& referral,
                                                  const std::string& category,
                                                  const std::string& text);
  // Emergency access (break-glass) to the person's records of these
  // categories, for the agency of `who` (an emergency-role staff member at
  // an agency holding the emergency role), with its reason, for `duration`
  // (0: the hub's default; at most its maximum). Compliance reviews every
  // one. Returns the break-glass id and when it ends.
  struct EmergencyAccess {
    std::string id;
    int64_t until_unix_nanos = 0;
  };
  absl::StatusOr<EmergencyAccess> BreakGlass(const StaffMember& who, const std::string& mrn,
                                             const std::vector<std::string>& categories,
                                             const std::string& reason, absl::Duration duration);
  // The agency's open places for a service (a receiver's report).
  absl::StatusOr<v1::Receipt> ReportCapacity(const StaffMember& who, const std::string& service,
                                             uint32_t open_slots);
  // The staff member's own agency as the directory has it.
  absl::StatusOr<v1::AgencyRecord> OwnAgency(const StaffMember& who);
  // Agencies that can take a referral for `service` now (the hub's own
  // rule: active, onboarded, offering it, receiving), for the sender to
  // choose; without a service, every active onboarded receiver.
  absl::StatusOr<std::vector<v1::AgencyRecord>> Recipients(const StaffMember& who,
                                                           const std::string& service);
  // Before sending by criteria: the agencies the hub's routing would rank,
  // best first, each with why (the same pure ranking the hub runs, over the
  // directory as the sender reads it now; the hub ranks again at sending).
  struct Ranked {
    v1::RoutingCandidate candidate;
    std::string name;
  };
  absl::StatusOr<std::vector<Ranked>> Candidates(const StaffMember& who, const std::string& service,
                                                 const v1::RoutingCriteria& criteria);

  // The directory's receivers of `service`, whatever their state.
  absl::StatusOr<std::vector<v1::AgencyRecord>> Receivers(const StaffMember& who,
                                                          const std::string& service);

  // The agencies this edge can sign for.
  absl::StatusOr<std::vector<std::string>> Agencies() const { return keys_->Agencies(); }

 private:
  absl::StatusOr<std::string> Sign(const StaffMember& who, const google::protobuf::Message& payload,
                                   const std::string& role);

  HubClient* hub_;
  const KeyCustody* keys_;
  Clock* clock_;
  Signer signer_;
};

// "referral.sender-id/r-1" pieces; INVALID_ARGUMENT for anything else.
absl::StatusOr<std::pair<std::string, std::string>> SplitReferral(const std::string& referral);

}  // namespace careloop::edge
