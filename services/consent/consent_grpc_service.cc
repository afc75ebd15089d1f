#include "services/consent/consent_grpc_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/grpc_edge.h"
#include "services/trust/envelope.h"

namespace careloop::consent {

std::string ConsentGrpcService::Caller(const grpc::CallbackServerContext& ctx) const {
  return CallerIdentity(ctx, tls_);
}

grpc::ServerUnaryReactor* ConsentGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitEnvelopeRequest* req,
                                                     v1::SubmitEnvelopeResponse* resp) {
  // Submit waits for an fsync: off gRPC's threads.
  return FinishUnaryOn(&pool_, ctx, EnvelopeSenderIsCaller(*ctx, tls_, req->envelope()), resp,
                       [this, req] { return core_->Submit(req->envelope()); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ResolveSubject(grpc::CallbackServerContext* ctx,
                                                             const v1::ResolveSubjectRequest* req,
                                                             v1::ResolveSubjectResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->Resolve(*req, Caller(*ctx)); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::GetConsent(grpc::CallbackServerContext* ctx,
                                                         const v1::GetConsentRequest* req,
                                                         v1::ConsentRecord* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->GetConsent(req->consent_id(), Caller(*ctx)); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ListConsents(grpc::CallbackServerContext* ctx,
                                                           const v1::ListConsentsRequest* req,
                                                           v1::ListConsentsResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->ListConsents(*req, Caller(*ctx)); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::Check(grpc::CallbackServerContext* ctx,
                                                    const v1::CheckConsentRequest* req,
                                                    v1::CheckConsentResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp, [&] { return core_->Check(*req, Caller(*ctx)); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::DisclosureReport(
    grpc::CallbackServerContext* ctx, const v1::DisclosureReportRequest* req,
    v1::DisclosureReportResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->Report(*req, Caller(*ctx)); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ListBreakGlass(grpc::CallbackServerContext* ctx,
                                                             const v1::ListBreakGlassRequest* req,
                                                             v1::ListBreakGlassResponse* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp,
                     [&] { return core_->ListBreakGlass(*req, Caller(*ctx)); });
}

}  // namespace careloop::consent
