#include "services/directory/directory_grpc_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status.h"
#include "services/common/grpc_edge.h"
#include "services/common/grpc_status.h"

namespace careloop::directory {
grpc::ServerUnaryReactor* DirectoryGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                       const v1::SubmitEnvelopeRequest* req,
                                                       v1::SubmitEnvelopeResponse* resp) {
  return FinishUnary(ctx, AdmittedEnvelope(gate_, *ctx, tls_, "Submit", req->envelope()), resp,
                     [&]() -> absl::StatusOr<v1::SubmitEnvelopeResponse> {
                       ASSIGN_OR_RETURN(v1::Receipt receipt, core_->Submit(req->envelope()));
                       v1::SubmitEnvelopeResponse r;
                       *r.mutable_receipt() = std::move(receipt);
                       return r;
                     });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::GetReceipt(grpc::CallbackServerContext* ctx,
                                                           const v1::GetEnvelopeReceiptRequest* req,
                                                           v1::Receipt* resp) {
  return FinishUnary(ctx, resp,
                     [&] { return core_->GetReceipt(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::GetAgency(grpc::CallbackServerContext* ctx,
                                                          const v1::GetAgencyRequest* req,
                                                          v1::AgencyRecord* resp) {
  return FinishUnary(ctx, resp, [&] { return core_->GetAgency(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::SearchAgencies(grpc::CallbackServerContext* ctx,
                                                               const v1::SearchAgenciesRequest* req,
                                                               v1::SearchAgenciesResponse* resp) {
  return FinishUnary(ctx, resp, [&]() -> absl::StatusOr<v1::SearchAgenciesResponse> {
    ASSIGN_OR_RETURN(std::vector<v1::AgencyRecord> found,
                     core_->Search(*req, CallerIdentity(*ctx, tls_)));
    v1::SearchAgenciesResponse r;
    for (auto& a : found) *r.add_agencies() = std::move(a);
    return r;
  });
}

}  // namespace careloop::directory
