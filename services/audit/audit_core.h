// The audit service's core (no gRPC): trail queries over the ledger's
// indexes, a subject's consent trail, proofs for monitors, export bundles and
// FHIR AuditEvents. Heads, consistency proofs and inclusion proofs of the
// caller's own events are open to every authenticated agency; everything else
// is for compliance agencies and the hub. Every query, trail, report, export
// and FHIR request is recorded (AuditQueried / AuditExport in audit/<agency>).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "careloop/v1/audit.pb.h"
#include "services/audit/figures.h"
#include "services/consent/records.h"
#include "services/directory/agencies.h"
#include "services/policy/policy.h"
#include "storage/ledger.h"

namespace careloop::audit {

struct AuditOptions {
  uint32_t max_export_events = 50'000;
  std::string hub_name = "careloop.dev";  // the FHIR source observer
};

class AuditCore {
 public:
  AuditCore(storage::Ledger* ledger, directory::Agencies* directory,
            consent::SubjectRecords* consent, Clock* clock, AuditOptions options = {});

  absl::StatusOr<v1::AuditQueryResponse> Query(const v1::AuditQueryRequest& req,
                                               const policy::Caller& caller);
  absl::StatusOr<v1::TrailResponse> Trail(const v1::TrailRequest& req,
                                          const policy::Caller& caller);
  absl::StatusOr<v1::DisclosureReportResponse> Report(const v1::DisclosureReportRequest& req,
                                                      const policy::Caller& caller);
  absl::StatusOr<v1::SignedHead> Head(const v1::AuditHeadRequest& req,
                                      const policy::Caller& caller);
  absl::StatusOr<v1::AuditConsistencyResponse> Consistency(const v1::AuditConsistencyRequest& req,
                                                           const policy::Caller& caller);
  absl::StatusOr<v1::Receipt> Inclusion(const v1::AuditInclusionRequest& req,
                                        const policy::Caller& caller);
  absl::StatusOr<v1::ExportResponse> Export(const v1::ExportRequest& req,
                                            const policy::Caller& caller);
  absl::StatusOr<v1::FhirAuditEventsResponse> FhirAuditEvents(const v1::FhirAuditEventsRequest& req,
                                                              const policy::Caller& caller);
  // Who read what (services/audit/access.cc).
  absl::StatusOr<v1::AccessResponse> Access(const v1::AccessRequest& req,
                                            const policy::Caller& caller);
  // The referral figures (services/audit/figures.h): an agency's over the
  // referrals it sent or received, a hub admin's over the network.
  absl::StatusOr<v1::FiguresResponse> Figures(const v1::FiguresRequest& req,
                                              const policy::Caller& caller);

  // One FHIR R4 AuditEvent (JSON) for a recorded disclosure.
  static std::string FhirAuditEvent(const v1::DisclosureRecorded& d, uint64_t seq,
                                    int64_t recorded_unix_nanos, absl::string_view hub_name);

 private:
  // The events a query selects (no access check, nothing recorded).
  absl::StatusOr<v1::AuditQueryResponse> Select(const v1::AuditQueryRequest& req);
  // Where Select reads its candidates: a subject's events (a consent's
  // subject), a referral's and its thread's, an agency's, or the whole log.
  struct Source {
    std::string subject;
    std::vector<v1::Event> referral_events;
    int64_t to = 0;  // the time range's end
    bool payloads = false;
  };
  absl::StatusOr<std::vector<v1::Event>> ReferralEvents(absl::string_view referral, bool payloads);
  // The next page of candidates after `after`; `more` if the source has more.
  absl::StatusOr<std::vector<v1::Event>> NextPage(const v1::AuditQueryRequest& req,
                                                  const Source& src, uint64_t after, bool* more);
  // The caller's id as the reads use it, once the audit table admits it.
  absl::StatusOr<std::string> Admit(const policy::Caller& caller, absl::string_view method) const;
  // A read about one person (`subject`) is a RecordAccessed in the
  // person's trail; any other an AuditQueried.
  absl::Status Record(const policy::Caller& who, absl::string_view rpc,
                      const google::protobuf::Message& request, absl::string_view subject = {},
                      absl::string_view record_type = {});
  // The events of a subject (every merged id), in seq order, after `after`.
  absl::StatusOr<std::vector<v1::Event>> SubjectEvents(absl::string_view subject_id, uint64_t after,
                                                       bool payloads, size_t max, bool* more);
  static constexpr size_t kMaxPage = 1000;
  // Every event of a subject (merged ids too), with payloads.
  absl::StatusOr<std::vector<v1::Event>> AllSubjectEvents(absl::string_view subject);
  // What an agency signed and the reads it made, in seq order.
  absl::StatusOr<std::vector<v1::Event>> ActorEvents(absl::string_view agency);
  // The person a referral is about ("" if it names none yet).
  absl::StatusOr<std::string> SubjectOfReferral(absl::string_view referral);
  // The first seq committed at or after `t` (binary search on commit times).
  absl::StatusOr<uint64_t> FirstSeqAt(int64_t unix_nanos);

  storage::Ledger* ledger_;
  directory::Agencies* directory_;
  consent::SubjectRecords* consent_;
  Clock* clock_;
  AuditOptions options_;
  policy::Gate gate_;
  ReferralFigures figures_;
};

}  // namespace careloop::audit
