// The referral service's core (no gRPC): submission with routing, consent
// enforcement and duplicate refusal in one atomic append; status changes
// under the lifecycle's rules; reads for the sender and the recipients only.
//
// Streams:
//   referral/<sender>/<id>  ReferralSubmitted (the signed manifest), ReferralSections
//                           (hub: the sections, redactable), ReferralRouted (hub:
//                           recipient, candidates and reasons, withheld sections),
//                           StatusChanged (signed UpdateReferralStatus), ReferralViewed,
//                           ReferralDelivered (notification service: a recipient's ack),
//                           ReferralUnassigned
//   dedupe/<sender>/<subject>/<category>  DedupeOpened / DedupeClosed
//   disclosure/<subject>    DisclosureRecorded, one per section first made
//                           available to a recipient
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "careloop/v1/audit.pb.h"
#include "careloop/v1/referral.pb.h"
#include "services/consent/records.h"
#include "services/directory/agencies.h"
#include "services/policy/policy.h"
#include "services/referral/renderer.h"
#include "services/referral/routing.h"
#include "services/referral/sections.h"
#include "services/trust/signed_change.h"
#include "storage/ledger.h"
#include "storage/projection.h"

namespace careloop::referral {

struct ReferralOptions {
  absl::Duration max_clock_skew = absl::Minutes(5);
  std::set<std::string> service_codes = directory::DefaultServiceCodes();
  uint32_t default_max_attempts = 3;
  // How long a recipient has to accept, by priority.
  absl::Duration deadline_stat = absl::Hours(1);
  absl::Duration deadline_asap = absl::Hours(2);
  absl::Duration deadline_urgent = absl::Hours(4);
  absl::Duration deadline_routine = absl::Hours(48);
  SectionLimits limits;
  // 42 CFR §2.32: travels with every SUD (Part 2) section disclosed.
  std::string part2_notice =
      "This record, whose confidentiality is protected by federal law (42 CFR part 2), has been "
      "disclosed to you. 42 CFR part 2 prohibits unauthorized use or disclosure of this record.";
};

class ReferralCore final : public Renderer {
 public:
  ReferralCore(storage::Ledger* ledger, directory::Agencies* directory,
               storage::ProjectionRunner* directory_runner, consent::Decider* consent, Clock* clock,
               ReferralOptions options = {});

  // A signed ReferralManifest with its sections: verified, routed, decided
  // per section by consent, and appended in one append with the disclosures.
  // A retry of the same envelope gets the original answer.
  absl::StatusOr<v1::SubmitReferralResponse> Submit(const v1::SubmitReferralRequest& req);
  // Submit for a caller that must not wait (gRPC's own threads, with the
  // ledger in this process, so that the plan's reads are local): verifies
  // and plans on the calling thread, queues the append and returns. `done`
  // runs exactly once — at once for a refusal, else on the ledger's thread
  // after the fsync — with the answer, or with nullopt when the submission
  // needs the full path (a retry of an accepted envelope, a race the plan
  // lost): nothing of this attempt was written, and the caller runs Submit
  // where it may wait.
  using SubmitDone = std::function<void(std::optional<absl::StatusOr<v1::SubmitReferralResponse>>)>;
  void SubmitAsync(const v1::SubmitReferralRequest& req, SubmitDone done);
  // A signed UpdateReferralStatus from the party allowed to make the move.
  absl::StatusOr<v1::Receipt> UpdateStatus(absl::string_view envelope_bytes);

  // The reads ReferralService serves. Each admits `caller` through the
  // referral table (policy::Gate) first, whoever calls it. Only the sender
  // and the current or former recipients see a referral; a recipient sees
  // the sections consent allows now.
  absl::StatusOr<v1::ReferralView> Get(const v1::GetReferralRequest& req,
                                       const policy::Caller& caller);
  absl::StatusOr<v1::ListReferralsResponse> Sent(const v1::ListReferralsRequest& req,
                                                 const policy::Caller& caller);
  absl::StatusOr<v1::ListReferralsResponse> Inbox(const v1::ListReferralsRequest& req,
                                                  const policy::Caller& caller);

  static std::string ReferralStream(absl::string_view sender, absl::string_view referral_id);

  // Renderer: the referral as `caller` sees it now (consent checked again),
  // like Get but without recording that the recipient viewed it.
  absl::StatusOr<v1::ReferralView> View(absl::string_view referral,
                                        absl::string_view caller) override;

  // A signed ReferralMessage from the referral's sender or current recipient;
  // the other party receives the sections consent allows (each recorded as a
  // disclosure). A recipient may not pass on SUD (Part 2) records (§2.32).
  absl::StatusOr<v1::PostMessageResponse> PostMessage(const v1::PostMessageRequest& req);

  // Escalation: every open referral not accepted by its deadline (by
  // priority, from the routing's commit time) or rejected for capacity goes
  // to the next ranked candidate, up to its maximum attempts; then it is
  // marked unassigned and its sender told. Everything is derived from the
  // ledger and the clock, so it survives restarts. Returns how many moved.
  // A referral that cannot be loaded is logged, counted and passed over.
  absl::StatusOr<int> Escalate();
  uint64_t escalation_skipped() const { return escalation_skipped_.load(); }

 private:
  struct State;
  absl::StatusOr<State> Load(absl::string_view sender, absl::string_view referral_id);
  // Load by "<sender>/<id>"; an unknown referral is PERMISSION_DENIED, as
  // one the caller may not see (no oracle).
  // A read of a person's records by an agency, recorded in the ledger
  // (trust::ReadRecord); the hub's own renderings (delivery) are not.
  // The caller's id as the reads use it, once the referral table admits it.
  absl::StatusOr<std::string> Admit(const policy::Caller& caller, absl::string_view method) const;
  absl::Status RecordRead(const policy::Caller& who, absl::string_view rpc,
                          const google::protobuf::Message& request);
  absl::StatusOr<State> LoadVisible(absl::string_view referral, absl::string_view caller);
  // With `read_record`, each section the view shows is added to it with
  // the authority it was shown under (the record of the read).
  absl::StatusOr<v1::ReferralView> ViewFor(const State& st, absl::string_view caller,
                                           bool with_detail,
                                           v1::RecordAccessed* read_record = nullptr);
  // The manifest's own fields (ids, codes, priority), before anything is read.
  absl::Status ValidateManifest(const v1::ReferralManifest& m) const;
  // The candidates of a new referral, the recipient first: the named agency
  // if it can take it, or the best ranked by the criteria.
  absl::StatusOr<std::vector<v1::RoutingCandidate>> FirstRoute(const v1::ReferralManifest& m,
                                                               const std::string& sender);
  absl::StatusOr<v1::AppendRequest> PlanSubmit(const trust::VerifiedEnvelope& v,
                                               absl::string_view bytes,
                                               const v1::SubmitReferralRequest& req,
                                               v1::SubmitReferralResponse* resp);
  absl::StatusOr<v1::AppendRequest> PlanUpdate(const trust::VerifiedEnvelope& v,
                                               absl::string_view bytes);
  // PlanUpdate's parts: the capacity slot a move to `to` takes or gives
  // back, and the end of the duplicate guard when the referral ends.
  absl::Status AddCapacityChange(const State& st, v1::TaskStatus to, v1::AppendRequest* append);
  absl::Status AddDedupeClose(const State& st, v1::AppendRequest* append);
  absl::StatusOr<v1::AppendRequest> PlanMessage(const trust::VerifiedEnvelope& v,
                                                absl::string_view bytes,
                                                const v1::PostMessageRequest& req,
                                                v1::PostMessageResponse* resp);
  // The thread as `caller` may see it.
  absl::Status AddThread(const State& st, absl::string_view caller, v1::ReferralView* view,
                         v1::RecordAccessed* shown);
  struct Route {
    std::string sender, key, subject_id;
    bool new_subject = false;
    const v1::ReferralManifest* manifest = nullptr;
    std::vector<v1::RoutingCandidate> ranked;  // the first is the recipient
    uint32_t attempt = 1;
    std::vector<std::string> notify;  // also told (a former recipient)
    std::string actor;                // who signed it ("" for the hub's own rerouting)
  };
  // Decides consent per section for the route's recipient and adds the
  // ReferralRouted event, one DisclosureRecorded per permitted section, the
  // routing index entry, and the decision's preconditions.
  absl::StatusOr<v1::ReferralRouted> AddRoute(const Route& route, v1::AppendRequest* append);
  // Routes an open referral to its next candidate, or marks it unassigned.
  absl::Status Reroute(const State& st, absl::string_view why);
  std::vector<v1::RoutingCandidate> Rank(const v1::ReferralManifest& m,
                                         const std::set<std::string>& exclude);
  absl::StatusOr<v1::ListReferralsResponse> List(const v1::ListReferralsRequest& req,
                                                 absl::string_view caller, bool sent);

  storage::Ledger* ledger_;
  directory::Agencies* directory_;
  storage::ProjectionRunner* directory_runner_;
  consent::Decider* consent_;
  Clock* clock_;
  ReferralOptions options_;
  trust::RpcPolicy submit_policy_, update_policy_, message_policy_;
  policy::Gate gate_;
  // Escalation's view of routing-open, read incrementally.
  absl::Mutex escalate_mu_;
  std::set<std::string> open_ ABSL_GUARDED_BY(escalate_mu_);
  uint64_t routing_version_ ABSL_GUARDED_BY(escalate_mu_) = 0;
  trust::LedgerMessageLog seen_;
  std::atomic<uint64_t> escalation_skipped_{0};
};

}  // namespace careloop::referral
