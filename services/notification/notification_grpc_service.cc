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

absl::StatusOr<std::string> NotificationGrpcService::Agency(const grpc::CallbackServerContext& ctx,
                                                            absl::string_view method) const {
  ASSIGN_OR_RETURN(policy::Caller c, Admitted(gate_, ctx, tls_, method));
  return c.CoreId();
}

grpc::ServerUnaryReactor* NotificationGrpcService::CreateConsumer(
    grpc::CallbackServerContext* ctx, const v1::CreateConsumerRequest* req,
    v1::CreateConsumerResponse* resp) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "CreateConsumer");
  return FinishUnaryOn(&pool_, ctx, agency.status(), resp, [this, req, a = agency.value_or("")] {
    return core_->CreateConsumer(*req, a);
  });
}

grpc::ServerWriteReactor<v1::Notification>* NotificationGrpcService::Subscribe(
    grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* req) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "Subscribe");
  if (!agency.ok()) return new SubscribeReactor(agency.status());
  // Subscribe reads the consumer's cursor (a ledger read, no fsync).
  absl::StatusOr<std::unique_ptr<NotificationCore::Subscription>> sub =
      core_->Subscribe(*req, *agency);
  if (!sub.ok()) return new SubscribeReactor(sub.status());
  return new SubscribeReactor(*std::move(sub));
}

grpc::ServerUnaryReactor* NotificationGrpcService::Ack(grpc::CallbackServerContext* ctx,
                                                       const v1::AckRequest* req,
                                                       v1::AckResponse* resp) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "Ack");
  return FinishUnaryOn(&pool_, ctx, agency.status(), resp,
                       [this, req, a = agency.value_or("")] { return core_->Ack(*req, a); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::Status(grpc::CallbackServerContext* ctx,
                                                          const v1::DeliveryStatusRequest*,
                                                          v1::DeliveryStatusResponse* resp) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "Status");
  return FinishUnaryOn(
      &pool_, ctx, agency.status(), resp,
      [this, a = agency.value_or("")]() -> absl::StatusOr<v1::DeliveryStatusResponse> {
        ASSIGN_OR_RETURN(v1::DeliveryStatusResponse r, core_->Status(a));
        ASSIGN_OR_RETURN(std::optional<v1::WebhookStatus> w, webhooks_->Status(a));
        if (w) *r.mutable_webhook() = *std::move(w);
        return r;
      });
}

grpc::ServerUnaryReactor* NotificationGrpcService::SubmitWebhookChange(
    grpc::CallbackServerContext* ctx, const v1::SubmitEnvelopeRequest* req,
    v1::SubmitEnvelopeResponse* resp) {
  return FinishUnaryOn(&pool_, ctx,
                       AdmittedEnvelope(gate_, *ctx, tls_, "SubmitWebhookChange", req->envelope()),
                       resp, [this, req] { return webhooks_->Submit(req->envelope()); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::ListDeadLetters(
    grpc::CallbackServerContext* ctx, const v1::ListDeadLettersRequest* req,
    v1::ListDeadLettersResponse* resp) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "ListDeadLetters");
  return FinishUnaryOn(&pool_, ctx, agency.status(), resp, [this, req, a = agency.value_or("")] {
    return webhooks_->ListDeadLetters(*req, a);
  });
}

grpc::ServerUnaryReactor* NotificationGrpcService::TestWebhook(grpc::CallbackServerContext* ctx,
                                                               const v1::TestWebhookRequest*,
                                                               v1::TestWebhookResponse* resp) {
  absl::StatusOr<std::string> agency = Agency(*ctx, "TestWebhook");
  // An HTTP round trip: off gRPC's threads.
  return FinishUnaryOn(&pool_, ctx, agency.status(), resp,
                       [this, a = agency.value_or("")] { return webhooks_->Test(a); });
}

grpc::ServerUnaryReactor* NotificationGrpcService::WebhookKey(grpc::CallbackServerContext* ctx,
                                                              const v1::WebhookKeyRequest*,
                                                              v1::WebhookKeyResponse* resp) {
  return FinishUnary(
      ctx, Agency(*ctx, "WebhookKey").status(), resp,
      [this]() -> absl::StatusOr<v1::WebhookKeyResponse> { return webhooks_->Key(); });
}

}  // namespace careloop::notification
