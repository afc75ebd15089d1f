// NotificationService over gRPC: the caller CallerIdentity names, passed to
// the service's entry point (Notifications), which admits it. Only a signed
// webhook change is checked here too: over mTLS its signer must be the
// connection's own identity.
#pragma once

#include "careloop/v1/notification.grpc.pb.h"
#include "services/common/grpc_edge.h"
#include "services/notification/notifications.h"

namespace careloop::notification {

class NotificationGrpcService final : public v1::NotificationService::CallbackService {
 public:
  NotificationGrpcService(Notifications* service, const directory::Agencies* agencies, bool tls)
      : service_(service), tls_(tls), gate_(&policy::NotificationTable(), agencies, tls) {}

  grpc::ServerUnaryReactor* CreateConsumer(grpc::CallbackServerContext* ctx,
                                           const v1::CreateConsumerRequest* req,
                                           v1::CreateConsumerResponse* resp) override;
  grpc::ServerWriteReactor<v1::Notification>* Subscribe(grpc::CallbackServerContext* ctx,
                                                        const v1::SubscribeRequest* req) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* ctx, const v1::AckRequest* req,
                                v1::AckResponse* resp) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const v1::DeliveryStatusRequest* req,
                                   v1::DeliveryStatusResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitWebhookChange(grpc::CallbackServerContext* ctx,
                                                const v1::SubmitEnvelopeRequest* req,
                                                v1::SubmitEnvelopeResponse* resp) override;
  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* ctx,
                                            const v1::ListDeadLettersRequest* req,
                                            v1::ListDeadLettersResponse* resp) override;
  grpc::ServerUnaryReactor* TestWebhook(grpc::CallbackServerContext* ctx,
                                        const v1::TestWebhookRequest* req,
                                        v1::TestWebhookResponse* resp) override;
  grpc::ServerUnaryReactor* WebhookKey(grpc::CallbackServerContext* ctx,
                                       const v1::WebhookKeyRequest* req,
                                       v1::WebhookKeyResponse* resp) override;

 private:
  Notifications* service_;
  bool tls_;
  policy::Gate gate_;
  // Acks and consumer creation wait for an fsync: off gRPC's threads.
  BlockingPool pool_{16};
};

}  // namespace careloop::notification
