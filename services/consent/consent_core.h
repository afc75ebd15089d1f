// The consent service's core (no gRPC): subjects and their identifiers,
// consents, decisions, break-glass, and the disclosure report.
//
// Nothing here keeps state of its own: every answer is computed from the
// ledger's streams, read directly (never from a projection that may lag), so
// the stream versions a decision reports are exactly the versions it read.
//
// Streams (docs/ARCHITECTURE.md, "Consent"):
//   subject/<id>        SubjectCreated, LinkIdentifier, MergeSubjects, SubjectMergedInto
//   ident/<sha256 hex>  IdentifierClaimed: which subject an identifier is
//   consent/<subject>   GrantConsent, AmendConsent, RevokeConsent (envelopes),
//                       ConsentRevocationNotice (one per holding agency),
//                       BreakGlassInvoked
//   consent-id/<id>     ConsentLocated: which subject a consent belongs to
//   disclosure/<subject> DisclosureRecorded
//   breakglass/<id>     BreakGlass (envelope), ReviewBreakGlass (envelope)
//   breakglass          BreakGlassListed: the review list
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/directory.pb.h"
#include "services/consent/decision.h"
#include "services/consent/records.h"
#include "services/directory/agencies.h"
#include "services/policy/policy.h"
#include "services/trust/signed_change.h"
#include "storage/ledger.h"
#include "storage/projection.h"

namespace careloop::consent {

struct ConsentOptions {
  absl::Duration max_clock_skew = absl::Minutes(5);
  // Data categories consents may name; the defaults plus configured ones.
  std::set<std::string> categories = KnownCategories();
  absl::Duration default_break_glass = absl::Hours(1);
  absl::Duration max_break_glass = absl::Hours(24);
  // New subject ids; the default draws 64 random bits from OpenSSL.
  std::function<std::string()> new_subject_id;
};

// The payload types ConsentService accepts and the actor roles for each.
trust::RpcPolicy ConsentPolicy(absl::Duration max_clock_skew);

class ConsentCore final : public Decider, public SubjectRecords {
 public:
  using PlannedSubject = consent::PlannedSubject;
  using StreamReads = SubjectRecords::StreamReads;
  // `directory` is a projection of the same ledger, run by `directory_runner`.
  ConsentCore(storage::Ledger* ledger, directory::Agencies* directory,
              storage::ProjectionRunner* directory_runner, Clock* clock,
              ConsentOptions options = {});

  // Verifies and applies one signed change (grant, amend, revoke, link, merge,
  // break-glass, review). A retry of the same envelope gets the original
  // receipt; a refused one writes nothing.
  absl::StatusOr<v1::SubmitEnvelopeResponse> Submit(absl::string_view envelope_bytes);

  // The reads ConsentService serves. Each admits `caller` through the
  // consent table (policy::Gate) before anything else, whoever calls it: the
  // gRPC adapter, the agency edge, a test. The hub's own services reach
  // consent through Decider and SubjectRecords instead.
  absl::StatusOr<v1::ResolveSubjectResponse> Resolve(const v1::ResolveSubjectRequest& req,
                                                     const policy::Caller& caller);
  absl::StatusOr<v1::ConsentRecord> GetConsent(absl::string_view consent_id,
                                               const policy::Caller& caller);
  absl::StatusOr<v1::ListConsentsResponse> ListConsents(const v1::ListConsentsRequest& req,
                                                        const policy::Caller& caller);
  // What consent would let a recipient see of a person the caller names by
  // its own identifier (services/consent/preview.cc).
  absl::StatusOr<v1::PreviewDisclosureResponse> PreviewDisclosure(
      const v1::PreviewDisclosureRequest& req, const policy::Caller& caller);
  absl::StatusOr<v1::CheckConsentResponse> Check(const v1::CheckConsentRequest& req,
                                                 const policy::Caller& caller);
  absl::StatusOr<v1::DisclosureReportResponse> Report(const v1::DisclosureReportRequest& req,
                                                      const policy::Caller& caller);
  absl::StatusOr<v1::ListBreakGlassResponse> ListBreakGlass(const v1::ListBreakGlassRequest& req,
                                                            const policy::Caller& caller);

  // Decider.
  absl::StatusOr<PlannedSubject> PlanResolve(const v1::ResolveSubjectRequest& req,
                                             absl::string_view sender) override;
  absl::StatusOr<v1::CheckConsentResponse> Decide(const v1::CheckConsentRequest& req) override;

  // SubjectRecords.
  absl::StatusOr<SubjectSet> Subjects(absl::string_view subject_id,
                                      StreamReads* reads = nullptr) override;
  absl::StatusOr<v1::DisclosureReportResponse> Accounting(
      const v1::DisclosureReportRequest& req) override;
  bool IsCompliance(absl::string_view agency) const override;

 private:
  struct ConsentView {
    v1::ConsentRecord record;
    std::string stream;  // where it was granted
  };
  struct SubjectState {
    SubjectSet subjects;
    std::map<std::string, ConsentView> consents;  // by id
    std::vector<v1::BreakGlassRecord> break_glass;
    std::vector<v1::StreamVersion> consent_versions;     // consent/<member>
    std::vector<v1::StreamVersion> disclosure_versions;  // disclosure/<member>, if loaded
    std::vector<std::pair<uint64_t, v1::DisclosureRecorded>> disclosures;  // if loaded
  };
  absl::StatusOr<SubjectState> Load(absl::string_view subject_id, bool with_disclosures);
  // Load's steps: the consent streams of every member, in seq order (their
  // versions noted in `st` and `reads`); one event folded into `st`; the
  // disclosures of every member.
  absl::StatusOr<std::vector<v1::Event>> ReadConsentStreams(SubjectState* st, StreamReads* reads);
  static absl::Status FoldConsentEvent(const v1::Event& e, SubjectState* st);
  absl::Status LoadDisclosures(SubjectState* st);
  absl::StatusOr<std::string> LocateConsent(absl::string_view consent_id);
  // The 45 CFR §164.528(a)(1) exclusions careloop can tell from its events.
  bool IsExcludedFromAccounting(const v1::DisclosureRecorded& d, const SubjectState& st) const;
  bool MayRead(const v1::ConsentRecord& r, absl::string_view caller) const;
  // A read of a person's records by an agency or compliance, recorded in
  // the ledger (trust::ReadRecord); the hub's own decisions are not.
  // About one person (`subject`, with the kind of record read): a
  // RecordAccessed in the person's trail; otherwise an AuditQueried.
  absl::Status RecordRead(const policy::Caller& who, absl::string_view rpc,
                          const google::protobuf::Message& request, absl::string_view subject = {},
                          absl::string_view record_type = {});
  // The caller's id as the reads use it, once the table admits it.
  absl::StatusOr<std::string> Admit(const policy::Caller& caller, absl::string_view method) const;
  absl::Status ValidateConsent(const v1::Consent& c) const;
  absl::Status ValidateRule(const v1::ConsentRule& r, int depth, int* count,
                            bool* names_part2) const;

  absl::StatusOr<v1::AppendRequest> Plan(const trust::VerifiedEnvelope& v, absl::string_view bytes,
                                         std::string* assigned_id);
  absl::StatusOr<v1::AppendRequest> PlanLink(const trust::VerifiedEnvelope& v,
                                             absl::string_view bytes);
  absl::StatusOr<v1::AppendRequest> PlanUnmerge(const trust::VerifiedEnvelope& v,
                                                absl::string_view bytes);
  // Object-level rules for people's records (DESIGN.md, "Authorization").
  // PERMISSION_DENIED unless `agency` holds the identifier's authority.
  absl::Status RequireAuthority(absl::string_view agency, const v1::Identifier& id) const;
  // The identifier is of an authority the agency holds and that is not shared.
  bool OwnIdentifier(absl::string_view agency, const v1::Identifier& id) const;
  // Compliance; or an identifier the agency linked or resolved itself, of an
  // authority of its own (not shared); or an open referral about the person
  // naming it as sender or current recipient.
  absl::StatusOr<bool> HasRelationship(absl::string_view agency, const SubjectSet& set);
  // A referral about `subject_id` that is open (not completed, cancelled,
  // failed, rejected without a new routing, or entered in error) and names
  // `agency` as its sender or its current recipient.
  absl::StatusOr<bool> HasOpenReferral(absl::string_view agency, absl::string_view subject_id);
  // The subject's set if `agency` has a relationship to it; PERMISSION_DENIED
  // alike for an unrelated and a missing subject.
  absl::StatusOr<SubjectSet> RelatedSubjects(absl::string_view agency,
                                             absl::string_view subject_id);
  absl::StatusOr<v1::AppendRequest> PlanMerge(const trust::VerifiedEnvelope& v,
                                              absl::string_view bytes);
  absl::StatusOr<v1::AppendRequest> PlanGrant(const trust::VerifiedEnvelope& v,
                                              absl::string_view bytes, std::string* assigned_id);
  absl::StatusOr<v1::AppendRequest> PlanAmendOrRevoke(const trust::VerifiedEnvelope& v,
                                                      absl::string_view bytes);
  absl::StatusOr<v1::AppendRequest> PlanBreakGlass(const trust::VerifiedEnvelope& v,
                                                   absl::string_view bytes,
                                                   std::string* assigned_id);
  absl::StatusOr<v1::AppendRequest> PlanReview(const trust::VerifiedEnvelope& v,
                                               absl::string_view bytes);

  // Subjects() without the cache: reads the subject streams.
  absl::StatusOr<SubjectSet> FollowSubjects(absl::string_view subject_id, StreamReads* reads);
  // Whether every stream of `reads` is still at the version read.
  absl::StatusOr<bool> StillCurrent(const StreamReads& reads);

  // Folds of a subject's consents (without disclosures), reused while every
  // stream they read is still at the version read: a decision for a known
  // subject costs a version lookup per stream instead of reading and parsing
  // the streams again. Any append to one of them makes the next call fold
  // again; a fold is a function of the streams' contents only.
  struct CachedFold {
    std::shared_ptr<const SubjectState> state;
    StreamReads reads;
  };
  // Subject sets likewise (the subject streams followed through merges).
  struct CachedSubjects {
    SubjectSet set;
    StreamReads reads;
  };
  absl::Mutex folds_mu_;
  absl::flat_hash_map<std::string, CachedFold> folds_ ABSL_GUARDED_BY(folds_mu_);
  absl::flat_hash_map<std::string, CachedSubjects> subjects_ ABSL_GUARDED_BY(folds_mu_);

  storage::Ledger* ledger_;
  directory::Agencies* directory_;
  storage::ProjectionRunner* directory_runner_;
  Clock* clock_;
  ConsentOptions options_;
  trust::RpcPolicy policy_;
  policy::Gate gate_;
  trust::LedgerMessageLog seen_;
};

}  // namespace careloop::consent
