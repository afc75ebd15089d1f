#include "services/edge/in_process_hub.h"

#include <utility>

#include "base/status.h"

namespace careloop::edge {
namespace {

policy::Caller CallerOf(const Acting& who) {
  return policy::Caller::Agency(who.agency_id, who.user_id);
}

class InProcessStream final : public ChangeStream {
 public:
  explicit InProcessStream(std::unique_ptr<notification::NotificationCore::Subscription> s)
      : subscription_(std::move(s)) {}
  absl::StatusOr<std::vector<v1::Notification>> Next(absl::Duration wait) override {
    return subscription_->Next(wait);
  }
  void Cancel() override { subscription_->Cancel(); }

 private:
  std::unique_ptr<notification::NotificationCore::Subscription> subscription_;
};

}  // namespace

InProcessHub::InProcessHub(HubCores cores) : cores_(cores) {
  CARELOOP_CHECK(cores_.referrals != nullptr && cores_.consent != nullptr &&
                 cores_.directory != nullptr && cores_.notifications != nullptr);
}

absl::StatusOr<v1::SubmitReferralResponse> InProcessHub::SubmitReferral(
    const v1::SubmitReferralRequest& req) {
  return cores_.referrals->Submit(req);
}

absl::StatusOr<v1::Receipt> InProcessHub::UpdateReferralStatus(const std::string& envelope) {
  return cores_.referrals->UpdateStatus(envelope);
}

absl::StatusOr<v1::PostMessageResponse> InProcessHub::PostMessage(
    const v1::PostMessageRequest& req) {
  return cores_.referrals->PostMessage(req);
}

absl::StatusOr<v1::SubmitEnvelopeResponse> InProcessHub::SubmitConsentChange(
    const std::string& envelope) {
  return cores_.consent->Submit(envelope);
}

absl::StatusOr<v1::Receipt> InProcessHub::SubmitDirectoryChange(const std::string& envelope) {
  return cores_.directory->Submit(envelope);
}

absl::StatusOr<v1::ReferralView> InProcessHub::GetReferral(const v1::GetReferralRequest& req,
                                                           const Acting& who) {
  return cores_.referrals->Get(req, CallerOf(who));
}

absl::StatusOr<v1::ListReferralsResponse> InProcessHub::Inbox(const v1::ListReferralsRequest& req,
                                                              const Acting& who) {
  return cores_.referrals->Inbox(req, CallerOf(who));
}

absl::StatusOr<v1::ListReferralsResponse> InProcessHub::Sent(const v1::ListReferralsRequest& req,
                                                             const Acting& who) {
  return cores_.referrals->Sent(req, CallerOf(who));
}

absl::StatusOr<v1::ResolveSubjectResponse> InProcessHub::ResolveSubject(
    const v1::ResolveSubjectRequest& req, const Acting& who) {
  return cores_.consent->Resolve(req, CallerOf(who));
}

absl::StatusOr<v1::ConsentRecord> InProcessHub::GetConsent(const v1::GetConsentRequest& req,
                                                           const Acting& who) {
  return cores_.consent->GetConsent(req.consent_id(), CallerOf(who));
}

absl::StatusOr<v1::ListConsentsResponse> InProcessHub::ListConsents(
    const v1::ListConsentsRequest& req, const Acting& who) {
  return cores_.consent->ListConsents(req, CallerOf(who));
}

absl::StatusOr<v1::PreviewDisclosureResponse> InProcessHub::PreviewDisclosure(
    const v1::PreviewDisclosureRequest& req, const Acting& who) {
  return cores_.consent->PreviewDisclosure(req, CallerOf(who));
}

absl::StatusOr<v1::AgencyRecord> InProcessHub::GetAgency(const v1::GetAgencyRequest& req,
                                                         const Acting& who) {
  return cores_.directory->GetAgency(req, CallerOf(who));
}

absl::StatusOr<std::vector<v1::AgencyRecord>> InProcessHub::SearchAgencies(
    const v1::SearchAgenciesRequest& req, const Acting& who) {
  return cores_.directory->Search(req, CallerOf(who));
}

absl::StatusOr<audit::AuditCore*> InProcessHub::Audit() const {
  if (cores_.audit == nullptr)
    return absl::UnimplementedError("this hub does not run the audit service");
  return cores_.audit;
}

absl::StatusOr<v1::TrailResponse> InProcessHub::Trail(const v1::TrailRequest& req,
                                                      const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Trail(req, CallerOf(who));
}

absl::StatusOr<v1::DisclosureReportResponse> InProcessHub::Report(
    const v1::DisclosureReportRequest& req, const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Report(req, CallerOf(who));
}

absl::StatusOr<v1::AccessResponse> InProcessHub::Access(const v1::AccessRequest& req,
                                                        const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Access(req, CallerOf(who));
}

absl::StatusOr<v1::FiguresResponse> InProcessHub::Figures(const v1::FiguresRequest& req,
                                                          const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Figures(req, CallerOf(who));
}

absl::StatusOr<v1::ListBreakGlassResponse> InProcessHub::ListBreakGlass(
    const v1::ListBreakGlassRequest& req, const Acting& who) {
  return cores_.consent->ListBreakGlass(req, CallerOf(who));
}

absl::StatusOr<v1::SignedHead> InProcessHub::Head(const v1::AuditHeadRequest& req,
                                                  const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Head(req, CallerOf(who));
}

absl::StatusOr<v1::AuditConsistencyResponse> InProcessHub::Consistency(
    const v1::AuditConsistencyRequest& req, const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Consistency(req, CallerOf(who));
}

absl::StatusOr<v1::ExportResponse> InProcessHub::Export(const v1::ExportRequest& req,
                                                        const Acting& who) {
  ASSIGN_OR_RETURN(audit::AuditCore * a, Audit());
  return a->Export(req, CallerOf(who));
}

absl::StatusOr<v1::CreateConsumerResponse> InProcessHub::CreateConsumer(
    const v1::CreateConsumerRequest& req, const Acting& who) {
  return cores_.notifications->CreateConsumer(req, CallerOf(who));
}

absl::StatusOr<std::unique_ptr<ChangeStream>> InProcessHub::Subscribe(
    const v1::SubscribeRequest& req, const Acting& who) {
  ASSIGN_OR_RETURN(auto subscription, cores_.notifications->Subscribe(req, CallerOf(who)));
  return std::unique_ptr<ChangeStream>(new InProcessStream(std::move(subscription)));
}

absl::StatusOr<v1::AckResponse> InProcessHub::Ack(const v1::AckRequest& req, const Acting& who) {
  return cores_.notifications->Ack(req, CallerOf(who));
}

}  // namespace careloop::edge
