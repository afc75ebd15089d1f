#include "services/notification/notifications.h"

#include "base/status.h"

namespace careloop::notification {

Notifications::Notifications(NotificationCore* core, Webhooks* webhooks,
                             const directory::Agencies* agencies)
    : core_(core), webhooks_(webhooks), gate_(&policy::NotificationTable(), agencies, false) {}

absl::StatusOr<std::string> Notifications::Admit(const policy::Caller& caller,
                                                 absl::string_view method) const {
  RETURN_IF_ERROR(gate_.Admit(caller, method));
  return caller.CoreId();
}

absl::StatusOr<v1::CreateConsumerResponse> Notifications::CreateConsumer(
    const v1::CreateConsumerRequest& req, const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "CreateConsumer"));
  return core_->CreateConsumer(req, agency);
}

absl::StatusOr<std::unique_ptr<NotificationCore::Subscription>> Notifications::Subscribe(
    const v1::SubscribeRequest& req, const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "Subscribe"));
  return core_->Subscribe(req, agency);
}

absl::StatusOr<v1::AckResponse> Notifications::Ack(const v1::AckRequest& req,
                                                   const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "Ack"));
  return core_->Ack(req, agency);
}

absl::StatusOr<v1::DeliveryStatusResponse> Notifications::Status(const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "Status"));
  ASSIGN_OR_RETURN(v1::DeliveryStatusResponse r, core_->Status(agency));
  ASSIGN_OR_RETURN(std::optional<v1::WebhookStatus> w, webhooks_->Status(agency));
  if (w) *r.mutable_webhook() = *std::move(w);
  return r;
}

absl::StatusOr<v1::SubmitEnvelopeResponse> Notifications::SubmitWebhookChange(
    absl::string_view envelope) {
  return webhooks_->Submit(envelope);
}

absl::StatusOr<v1::ListDeadLettersResponse> Notifications::ListDeadLetters(
    const v1::ListDeadLettersRequest& req, const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "ListDeadLetters"));
  return webhooks_->ListDeadLetters(req, agency);
}

absl::StatusOr<v1::TestWebhookResponse> Notifications::TestWebhook(const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string agency, Admit(caller, "TestWebhook"));
  return webhooks_->Test(agency);
}

absl::StatusOr<v1::WebhookKeyResponse> Notifications::WebhookKey(const policy::Caller& caller) {
  RETURN_IF_ERROR(gate_.Admit(caller, "WebhookKey"));
  return webhooks_->Key();
}

}  // namespace careloop::notification
