// The edge's HubClient when careloopd hosts it: direct calls into the
// hub's service cores, through the same policy gates the gRPC adapters
// use (each read admits policy::Caller::Agency of the acting agency).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "services/audit/audit_core.h"
#include "services/consent/consent_core.h"
#include "services/directory/directory.h"
#include "services/edge/hub_client.h"
#include "services/notification/notifications.h"
#include "services/referral/referral_core.h"

namespace careloop::edge {

struct HubCores {
  referral::ReferralCore* referrals = nullptr;
  consent::ConsentCore* consent = nullptr;
  directory::DirectoryCore* directory = nullptr;
  notification::Notifications* notifications = nullptr;
  audit::AuditCore* audit = nullptr;  // null: this hub runs no audit service
};

class InProcessHub final : public HubClient {
 public:
  explicit InProcessHub(HubCores cores);

  absl::StatusOr<v1::SubmitReferralResponse> SubmitReferral(
      const v1::SubmitReferralRequest& req) override;
  absl::StatusOr<v1::Receipt> UpdateReferralStatus(const std::string& envelope) override;
  absl::StatusOr<v1::PostMessageResponse> PostMessage(const v1::PostMessageRequest& req) override;
  absl::StatusOr<v1::SubmitEnvelopeResponse> SubmitConsentChange(
      const std::string& envelope) override;
  absl::StatusOr<v1::Receipt> SubmitDirectoryChange(const std::string& envelope) override;

  absl::StatusOr<v1::ReferralView> GetReferral(const v1::GetReferralRequest& req,
                                               const Acting& who) override;
  absl::StatusOr<v1::ListReferralsResponse> Inbox(const v1::ListReferralsRequest& req,
                                                  const Acting& who) override;
  absl::StatusOr<v1::ListReferralsResponse> Sent(const v1::ListReferralsRequest& req,
                                                 const Acting& who) override;
  absl::StatusOr<v1::ResolveSubjectResponse> ResolveSubject(const v1::ResolveSubjectRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<v1::ConsentRecord> GetConsent(const v1::GetConsentRequest& req,
                                               const Acting& who) override;
  absl::StatusOr<v1::ListConsentsResponse> ListConsents(const v1::ListConsentsRequest& req,
                                                        const Acting& who) override;
  absl::StatusOr<v1::PreviewDisclosureResponse> PreviewDisclosure(
      const v1::PreviewDisclosureRequest& req, const Acting& who) override;
  absl::StatusOr<v1::AgencyRecord> GetAgency(const v1::GetAgencyRequest& req,
                                             const Acting& who) override;
  absl::StatusOr<std::vector<v1::AgencyRecord>> SearchAgencies(const v1::SearchAgenciesRequest& req,
                                                               const Acting& who) override;

  absl::StatusOr<v1::TrailResponse> Trail(const v1::TrailRequest& req, const Acting& who) override;
  absl::StatusOr<v1::DisclosureReportResponse> Report(const v1::DisclosureReportRequest& req,
                                                      const Acting& who) override;
  absl::StatusOr<v1::AccessResponse> Access(const v1::AccessRequest& req,
                                            const Acting& who) override;
  absl::StatusOr<v1::FiguresResponse> Figures(const v1::FiguresRequest& req,
                                              const Acting& who) override;
  absl::StatusOr<v1::ListBreakGlassResponse> ListBreakGlass(const v1::ListBreakGlassRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<v1::SignedHead> Head(const v1::AuditHeadRequest& req, const Acting& who) override;
  absl::StatusOr<v1::AuditConsistencyResponse> Consistency(const v1::AuditConsistencyRequest& req,
                                                           const Acting& who) override;
  absl::StatusOr<v1::ExportResponse> Export(const v1::ExportRequest& req,
                                            const Acting& who) override;

  absl::StatusOr<v1::CreateConsumerResponse> CreateConsumer(const v1::CreateConsumerRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<std::unique_ptr<ChangeStream>> Subscribe(const v1::SubscribeRequest& req,
                                                          const Acting& who) override;
  absl::StatusOr<v1::AckResponse> Ack(const v1::AckRequest& req, const Acting& who) override;

 private:
  absl::StatusOr<audit::AuditCore*> Audit() const;
  HubCores cores_;
};

}  // namespace careloop::edge
