// What the edge asks of the hub (DESIGN.md, "The agency edge"): the
// agency-facing calls, each made as one agency the edge serves, so the
// hub's policy (services/policy) decides exactly as for any other caller
// and the edge gains no power the agency lacks. Signed changes carry their
// agency and actor in the envelope; reads name the agency and the staff
// member on whose behalf they are made.
//
// Two implementations, one code path: in process (InProcessHub, the edge
// hosted by careloopd) and, for an edge run alone, a gRPC client.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "careloop/v1/audit.pb.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/directory.pb.h"
#include "careloop/v1/notification.pb.h"
#include "careloop/v1/referral.pb.h"

namespace careloop::edge {

// Who a read is for: the agency (the hub's caller) and the staff member
// acting (for the hub's record of who read what).
struct Acting {
  std::string agency_id;
  std::string user_id;
};

// An agency's notifications as they arrive (one subscription of a named
// consumer).
class ChangeStream {
 public:
  virtual ~ChangeStream() = default;
  // What came next, in seq order; empty when nothing came within `wait`.
  virtual absl::StatusOr<std::vector<v1::Notification>> Next(absl::Duration wait) = 0;
  // Wakes a pending Next (it returns CANCELLED). Thread-safe.
  virtual void Cancel() = 0;
};

class HubClient {
 public:
  virtual ~HubClient() = default;

  // Signed changes: the envelope says who sends them.
  virtual absl::StatusOr<v1::SubmitReferralResponse> SubmitReferral(
      const v1::SubmitReferralRequest& req) = 0;
  virtual absl::StatusOr<v1::Receipt> UpdateReferralStatus(const std::string& envelope) = 0;
  virtual absl::StatusOr<v1::PostMessageResponse> PostMessage(
      const v1::PostMessageRequest& req) = 0;
  virtual absl::StatusOr<v1::SubmitEnvelopeResponse> SubmitConsentChange(
      const std::string& envelope) = 0;
  virtual absl::StatusOr<v1::Receipt> SubmitDirectoryChange(const std::string& envelope) = 0;

  // Reads, as `who`.
  virtual absl::StatusOr<v1::ReferralView> GetReferral(const v1::GetReferralRequest& req,
                                                       const Acting& who) = 0;
  virtual absl::StatusOr<v1::ListReferralsResponse> Inbox(const v1::ListReferralsRequest& req,
                                                          const Acting& who) = 0;
  virtual absl::StatusOr<v1::ListReferralsResponse> Sent(const v1::ListReferralsRequest& req,
                                                         const Acting& who) = 0;
  virtual absl::StatusOr<v1::ResolveSubjectResponse> ResolveSubject(
      const v1::ResolveSubjectRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<v1::ConsentRecord> GetConsent(const v1::GetConsentRequest& req,
                                                       const Acting& who) = 0;
  virtual absl::StatusOr<v1::ListConsentsResponse> ListConsents(const v1::ListConsentsRequest& req,
                                                                const Acting& who) = 0;
  virtual absl::StatusOr<v1::PreviewDisclosureResponse> PreviewDisclosure(
      const v1::PreviewDisclosureRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<v1::AgencyRecord> GetAgency(const v1::GetAgencyRequest& req,
                                                     const Acting& who) = 0;
  virtual absl::StatusOr<std::vector<v1::AgencyRecord>> SearchAgencies(
      const v1::SearchAgenciesRequest& req, const Acting& who) = 0;

  // The compliance desk and the figures (AuditService; the break-glass
  // list from ConsentService).
  virtual absl::StatusOr<v1::TrailResponse> Trail(const v1::TrailRequest& req,
                                                  const Acting& who) = 0;
  virtual absl::StatusOr<v1::DisclosureReportResponse> Report(
      const v1::DisclosureReportRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<v1::AccessResponse> Access(const v1::AccessRequest& req,
                                                    const Acting& who) = 0;
  virtual absl::StatusOr<v1::FiguresResponse> Figures(const v1::FiguresRequest& req,
                                                      const Acting& who) = 0;
  virtual absl::StatusOr<v1::ListBreakGlassResponse> ListBreakGlass(
      const v1::ListBreakGlassRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<v1::SignedHead> Head(const v1::AuditHeadRequest& req,
                                              const Acting& who) = 0;
  virtual absl::StatusOr<v1::AuditConsistencyResponse> Consistency(
      const v1::AuditConsistencyRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<v1::ExportResponse> Export(const v1::ExportRequest& req,
                                                    const Acting& who) = 0;

  // Delivery, as the agency.
  virtual absl::StatusOr<v1::CreateConsumerResponse> CreateConsumer(
      const v1::CreateConsumerRequest& req, const Acting& who) = 0;
  virtual absl::StatusOr<std::unique_ptr<ChangeStream>> Subscribe(const v1::SubscribeRequest& req,
                                                                  const Acting& who) = 0;
  virtual absl::StatusOr<v1::AckResponse> Ack(const v1::AckRequest& req, const Acting& who) = 0;
};

}  // namespace careloop::edge
