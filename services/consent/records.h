// What other services may know of consent: the names and ids of a person's
// records, the append that records a disclosure, and the two interfaces the
// referral and audit services reach consent through (a decider and a reader
// of a person's records). The consent core implements both; nothing outside
// services/consent depends on the core itself.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/ledger.pb.h"

namespace careloop::consent {

// Purposes of use (after HL7 v3 ActReason), documented in docs/API.md.
const std::set<std::string>& KnownPurposes();
// A purpose's HL7 v3 ActReason (PurposeOfUse) code and display, for FHIR
// (care coordination is treatment; a disclosure to the person themself is
// PATRQT).
std::pair<std::string, std::string> PurposeOfUseCode(absl::string_view purpose);
// The purpose an ActReason code names ("" when careloop has none for it):
// CAREMGT is care coordination.
std::string PurposeOfActReason(absl::string_view code);
// Purposes the HIPAA §164.528 accounting leaves out: treatment (care
// coordination and emergency treatment are treatment), payment, operations.
const std::set<std::string>& TreatmentPaymentOperations();

// What the hub knows about one person: the surviving subject id and every id
// merged into it (transitively), with the versions read.
struct SubjectSet {
  std::string survivor;
  std::vector<std::string> members;  // survivor first
  uint64_t survivor_version = 0;     // of subject/<survivor>
};

// Stream names, one place.
std::string SubjectStream(absl::string_view subject_id);
std::string ConsentStream(absl::string_view subject_id);
std::string DisclosureStream(absl::string_view subject_id);
// ident/<hex SHA-256 of a domain string, the authority and the value>: the
// identifier's value never appears in a stream name.
std::string IdentifierStream(const v1::Identifier& id);
// Ids the hub assigns from the envelope (a retry gets the same id).
std::string ConsentIdFor(absl::string_view sender, absl::string_view message_id);
std::string BreakGlassIdFor(absl::string_view sender, absl::string_view message_id);

// The append that records one disclosure decided by `decision`: one
// DisclosureRecorded event, with the decision's read versions as
// preconditions, so it fails if anything the decision read changed. Every
// category of `d` must be permitted by the decision; the consents or
// break-glass relied on are filled in from it.
absl::StatusOr<v1::AppendRequest> DisclosureAppend(const v1::CheckConsentResponse& decision,
                                                   v1::DisclosureRecorded d);

// Resolve without writing: the subject, and for a new one the events and
// preconditions that create it, for the caller to append together with
// whatever needs the subject (a referral), so that a refused request leaves
// no subject behind.
struct PlannedSubject {
  std::string subject_id;
  v1::AppendRequest creation;  // empty when the subject exists
};

// How a service that discloses (referrals) asks consent: which subject an
// identifier names, and what may go to whom.
class Decider {
 public:
  virtual ~Decider() = default;
  // For a verified envelope's sender (`sender`), who must hold the
  // identifier's authority.
  virtual absl::StatusOr<PlannedSubject> PlanResolve(const v1::ResolveSubjectRequest& req,
                                                     absl::string_view sender) = 0;
  // The hub's own decision (not a read by anyone: it is not recorded; the
  // disclosure it leads to is).
  virtual absl::StatusOr<v1::CheckConsentResponse> Decide(const v1::CheckConsentRequest& req) = 0;
};

// How the audit service reads a person's records: the subject set behind an
// id, the disclosure report, and who counts as compliance.
class SubjectRecords {
 public:
  virtual ~SubjectRecords() = default;
  // Streams a fold read, each with the version it read.
  using StreamReads = std::vector<std::pair<std::string, uint64_t>>;
  // The subject an id stands for now (following merges). NOT_FOUND if none.
  // `reads`, if given, gets every subject stream read and its version.
  virtual absl::StatusOr<SubjectSet> Subjects(absl::string_view subject_id,
                                              StreamReads* reads = nullptr) = 0;
  // The disclosure report, for a caller the audit service has admitted and
  // records the read of.
  virtual absl::StatusOr<v1::DisclosureReportResponse> Accounting(
      const v1::DisclosureReportRequest& req) = 0;
  // The hub, or an active agency with the compliance role.
  virtual bool IsCompliance(absl::string_view agency) const = 0;
};

}  // namespace careloop::consent
