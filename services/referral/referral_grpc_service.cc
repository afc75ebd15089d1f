#include "services/referral/referral_grpc_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/grpc_edge.h"
#include "services/trust/envelope.h"

namespace careloop::referral {

absl::Status ReferralGrpcService::SenderIsCaller(const grpc::CallbackServerContext& ctx,
                                                 const std::string& envelope) const {
  if (!tls_) return absl::OkStatus();  // dev mode: the signature alone
  const std::string caller = CallerIdentity(ctx, tls_);
  absl::StatusOr<v1::Envelope> e = trust::ParseEnvelope(envelope, trust::EnvelopeLimits());
  if (!e.ok()) return e.status();
  if (caller.empty() || e->sender_agency() != caller) {
    return absl::PermissionDeniedError(
        absl::StrCat("the connection is ", caller.empty() ? "no agency" : caller,
                     " but the envelope is from ", e->sender_agency()));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ReferralGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitReferralRequest* req,
                                                      v1::SubmitReferralResponse* resp) {
  return FinishUnary(ctx, SenderIsCaller(*ctx, req->envelope()), resp,
                     [&] { return core_->Submit(*req); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::UpdateStatus(grpc::CallbackServerContext* ctx,
                                                            const v1::SubmitEnvelopeRequest* req,
                                                            v1::Receipt* resp) {
  return FinishUnary(ctx, SenderIsCaller(*ctx, req->envelope()), resp,
                     [&] { return core_->UpdateStatus(req->envelope()); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Get(grpc::CallbackServerContext* ctx,
                                                   const v1::GetReferralRequest* req,
                                                   v1::ReferralView* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->Get(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Sent(grpc::CallbackServerContext* ctx,
                                                    const v1::ListReferralsRequest* req,
                                                    v1::ListReferralsResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->Sent(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::Inbox(grpc::CallbackServerContext* ctx,
                                                     const v1::ListReferralsRequest* req,
                                                     v1::ListReferralsResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->Inbox(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* ReferralGrpcService::PostMessage(grpc::CallbackServerContext* ctx,
                                                           const v1::PostMessageRequest* req,
                                                           v1::PostMessageResponse* resp) {
  return FinishUnary(ctx, SenderIsCaller(*ctx, req->envelope()), resp,
                     [&] { return core_->PostMessage(*req); });
}

}  // namespace careloop::referral
