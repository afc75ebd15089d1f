// NotificationService's entry point (no gRPC): every call is admitted by the
// notification table (policy::Gate) for the caller it names, whoever makes
// it (the gRPC adapter, the agency edge), then answered by the delivery core
// (consumers, subscriptions, acks) and the webhooks. An agency reaches its
// own consumers and webhook only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "careloop/v1/notification.pb.h"
#include "services/directory/agencies.h"
#include "services/notification/notification_core.h"
#include "services/notification/webhooks.h"
#include "services/policy/policy.h"

namespace careloop::notification {

class Notifications {
 public:
  Notifications(NotificationCore* core, Webhooks* webhooks, const directory::Agencies* agencies);

  absl::StatusOr<v1::CreateConsumerResponse> CreateConsumer(const v1::CreateConsumerRequest& req,
                                                            const policy::Caller& caller);
  absl::StatusOr<std::unique_ptr<NotificationCore::Subscription>> Subscribe(
      const v1::SubscribeRequest& req, const policy::Caller& caller);
  absl::StatusOr<v1::AckResponse> Ack(const v1::AckRequest& req, const policy::Caller& caller);
  // The caller's consumers, and its webhook if it has one.
  absl::StatusOr<v1::DeliveryStatusResponse> Status(const policy::Caller& caller);
  // The signer is admitted by the table when the envelope is verified.
  absl::StatusOr<v1::SubmitEnvelopeResponse> SubmitWebhookChange(absl::string_view envelope);
  absl::StatusOr<v1::ListDeadLettersResponse> ListDeadLetters(const v1::ListDeadLettersRequest& req,
                                                              const policy::Caller& caller);
  absl::StatusOr<v1::TestWebhookResponse> TestWebhook(const policy::Caller& caller);
  absl::StatusOr<v1::WebhookKeyResponse> WebhookKey(const policy::Caller& caller);

 private:
  // The caller's id as the cores use it, once the table admits it.
  absl::StatusOr<std::string> Admit(const policy::Caller& caller, absl::string_view method) const;

  NotificationCore* core_;
  Webhooks* webhooks_;
  policy::Gate gate_;
};

}  // namespace careloop::notification
