#include "services/notification/notification_grpc_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "services/common/grpc_edge.h"

namespace careloop::notification {

namespace {

// One subscription's stream. A thread of its own waits for events and
// writes them one at a time (a slow reader holds up only itself); gRPC's
// callback threads never block.
class SubscribeReactor final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  explicit SubscribeReactor(const absl::Status& refused) { Finish(ToGrpcStatus(refused)); }
  explicit SubscribeReactor(std::unique_ptr<NotificationCore::Subscription> sub)
      : sub_(std::move(sub)) {
    worker_ = std::thread([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) broken_ = true;
  }
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    if (sub_) sub_->Cancel();
  }
  void OnDone() override {
    if (worker_.joinable()) {
      if (worker_.get_id() == std::this_thread::get_id()) {
        worker_.detach();
      } else {
        worker_.join();
      }
    }
    delete this;
  }

 private:
  void Run() {
    absl::Status end;
    while (end.ok()) {
      absl::StatusOr<std::vector<v1::Notification>> batch = sub_->Next(absl::Milliseconds(250));
      if (!batch.ok()) {
        end = batch.status();
        break;
      }
      for (v1::Notification& n : *batch) {
        if (!sub_->Wanted(n.seq())) continue;  // acknowledged while it waited
        absl::MutexLock lock(&mu_);
        if (broken_) break;
        current_ = std::move(n);
        writing_ = true;
        StartWrite(&current_);
        // OnWriteDone comes also when the call is cancelled meanwhile.
        mu_.Await(absl::Condition(
            +[](SubscribeReactor* r) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !r->writing_; },
            this));
      }
      absl::MutexLock lock(&mu_);
      if (broken_) end = absl::CancelledError("the subscriber went away");
    }
    Finish(ToGrpcStatus(end));
  }

  std::unique_ptr<NotificationCore::Subscription> sub_;
  std::thread worker_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  v1::Notification current_;
};

}  // namespace

grpc::ServerUnaryReactor* NotificationGrpcService::CreateConsumer(
    grpc::CallbackServerContext* ctx, const v1::CreateConsumerRequest* req,
    v1::CreateConsumerResponse* resp) {
  return FinishUnaryOn(&pool_, ctx, absl::OkStatus(), resp,
                       [this, req, caller = CallerIdentity(*ctx, tls_)] {
                         return service_->CreateConsumer(*req, caller);
                       });
}

grpc::ServerWriteReactor<v1::Notification>* NotificationGrpcService::Subscribe(
    grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* req) {
  // Subscribe reads the consumer's cursor (a ledger read, no fsync).
  absl::StatusOr<std::unique_ptr<NotificationCore::Subscription>> sub =
      service_->Subscribe(*req, CallerIdentity(*ctx, tls_));
  if (!sub.ok()) return new SubscribeReactor(sub.status());
  return new SubscribeReactor(*std::move(sub));
}

grpc::ServerUnaryReactor* NotificationGrpcService::Ack(grpc::CallbackServerContext* ctx,
                                                       const v1::AckRequest* req,
                                                       v1::AckResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return service_->Ack(*req, caller); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::Status(grpc::CallbackServerContext* ctx,
                                                          const v1::DeliveryStatusRequest*,
                                                          v1::DeliveryStatusResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, caller = CallerIdentity(*ctx, tls_)] { return service_->Status(caller); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::SubmitWebhookChange(
    grpc::CallbackServerContext* ctx, const v1::SubmitEnvelopeRequest* req,
    v1::SubmitEnvelopeResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, AdmittedEnvelope(gate_, *ctx, tls_, "SubmitWebhookChange", req->envelope()),
      resp, [this, req] { return service_->SubmitWebhookChange(req->envelope()); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::ListDeadLetters(
    grpc::CallbackServerContext* ctx, const v1::ListDeadLettersRequest* req,
    v1::ListDeadLettersResponse* resp) {
  return FinishUnaryOn(&pool_, ctx, absl::OkStatus(), resp,
                       [this, req, caller = CallerIdentity(*ctx, tls_)] {
                         return service_->ListDeadLetters(*req, caller);
                       });
}

grpc::ServerUnaryReactor* NotificationGrpcService::TestWebhook(grpc::CallbackServerContext* ctx,
                                                               const v1::TestWebhookRequest*,
                                                               v1::TestWebhookResponse* resp) {
  // An HTTP round trip: off gRPC's threads.
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, caller = CallerIdentity(*ctx, tls_)] { return service_->TestWebhook(caller); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::WebhookKey(grpc::CallbackServerContext* ctx,
                                                              const v1::WebhookKeyRequest*,
                                                              v1::WebhookKeyResponse* resp) {
  return FinishUnary(ctx, resp, [&] { return service_->WebhookKey(CallerIdentity(*ctx, tls_)); });
}

}  // namespace careloop::notification
