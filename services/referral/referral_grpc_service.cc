#include "services/referral/referral_grpc_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/grpc_edge.h"

namespace careloop::referral {

absl::Status ReferralGrpcService::SenderIsCaller(const grpc::CallbackServerContext& ctx,
                                                 absl::string_view method,
                                                 const std::string& envelope) const {
  return AdmittedEnvelope(gate_, ctx, tls_, method, envelope);
}

grpc::ServerUnaryReactor* ReferralGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitReferralRequest* req,
                                                      v1::SubmitReferralResponse* resp) {
  if (!submit_inline_) {
    return FinishUnaryOn(&pool_, ctx, SenderIsCaller(*ctx, "Submit", req->envelope()), resp,
                         [this, req] { return core_->Submit(*req); });
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status allowed = SenderIsCaller(*ctx, "Submit", req->envelope()); !allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  core_->SubmitAsync(*req, [this, reactor, req, resp](
                               std::optional<absl::StatusOr<v1::SubmitReferralResponse>> answer) {
    if (answer.has_value()) {
      FinishWith(reactor, resp, *std::move(answer));
      return;
    }
    // The full path may read and wait: on the pool, as without submit_inline.
    pool_.Post([this, reactor, req, resp] { FinishWith(reactor, resp, core_->Submit(*req)); });
  });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralGrpcService::UpdateStatus(grpc::CallbackServerContext* ctx,
                                                            const v1::SubmitEnvelopeRequest* req,
                                                            v1::Receipt* resp) {
  return FinishUnaryOn(&pool_, ctx, SenderIsCaller(*ctx, "UpdateStatus", req->envelope()), resp,
                       [this, req] { return core_->UpdateStatus(req->envelope()); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Get(grpc::CallbackServerContext* ctx,
                                                   const v1::GetReferralRequest* req,
                                                   v1::ReferralView* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Get(*req, caller); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Sent(grpc::CallbackServerContext* ctx,
                                                    const v1::ListReferralsRequest* req,
                                                    v1::ListReferralsResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Sent(*req, caller); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Inbox(grpc::CallbackServerContext* ctx,
                                                     const v1::ListReferralsRequest* req,
                                                     v1::ListReferralsResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Inbox(*req, caller); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::PostMessage(grpc::CallbackServerContext* ctx,
                                                           const v1::PostMessageRequest* req,
                                                           v1::PostMessageResponse* resp) {
  return FinishUnaryOn(&pool_, ctx, SenderIsCaller(*ctx, "PostMessage", req->envelope()), resp,
                       [this, req] { return core_->PostMessage(*req); });
}

}  // namespace careloop::referral
