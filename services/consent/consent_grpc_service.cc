#include "services/consent/consent_grpc_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/grpc_edge.h"
#include "services/trust/envelope.h"

namespace careloop::consent {

grpc::ServerUnaryReactor* ConsentGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitEnvelopeRequest* req,
                                                     v1::SubmitEnvelopeResponse* resp) {
  // Submit waits for an fsync: off gRPC's threads.
  return FinishUnaryOn(&pool_, ctx, AdmittedEnvelope(gate_, *ctx, tls_, "Submit", req->envelope()),
                       resp, [this, req] { return core_->Submit(req->envelope()); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ResolveSubject(grpc::CallbackServerContext* ctx,
                                                             const v1::ResolveSubjectRequest* req,
                                                             v1::ResolveSubjectResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->Resolve(*req, c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::GetConsent(grpc::CallbackServerContext* ctx,
                                                         const v1::GetConsentRequest* req,
                                                         v1::ConsentRecord* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->GetConsent(req->consent_id(), c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ListConsents(grpc::CallbackServerContext* ctx,
                                                           const v1::ListConsentsRequest* req,
                                                           v1::ListConsentsResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->ListConsents(*req, c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::Check(grpc::CallbackServerContext* ctx,
                                                    const v1::CheckConsentRequest* req,
                                                    v1::CheckConsentResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->Check(*req, c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::PreviewDisclosure(
    grpc::CallbackServerContext* ctx, const v1::PreviewDisclosureRequest* req,
    v1::PreviewDisclosureResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->PreviewDisclosure(*req, c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::DisclosureReport(
    grpc::CallbackServerContext* ctx, const v1::DisclosureReportRequest* req,
    v1::DisclosureReportResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->Report(*req, c); });
}

grpc::ServerUnaryReactor* ConsentGrpcService::ListBreakGlass(grpc::CallbackServerContext* ctx,
                                                             const v1::ListBreakGlassRequest* req,
                                                             v1::ListBreakGlassResponse* resp) {
  const policy::Caller c = CallerIdentity(*ctx, tls_);
  return FinishUnary(ctx, resp, [&] { return core_->ListBreakGlass(*req, c); });
}

}  // namespace careloop::consent
