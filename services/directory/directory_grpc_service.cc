#include "services/directory/directory_grpc_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/common/grpc_edge.h"
#include "services/common/grpc_status.h"
#include "services/trust/envelope.h"

namespace careloop::directory {
absl::StatusOr<std::string> DirectoryGrpcService::Caller(
    const grpc::CallbackServerContext& ctx) const {
  std::optional<std::string> agency = CallerAgency(ctx);
  if (agency.has_value()) return *agency;
  if (tls_required_) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the client certificate names no agency (a URI SAN ", kAgencySpiffePrefix, "<id>)"));
  }
  return std::string();
}

grpc::ServerUnaryReactor* DirectoryGrpcService::Submit(grpc::CallbackServerContext* ctx,
                                                       const v1::SubmitEnvelopeRequest* req,
                                                       v1::SubmitEnvelopeResponse* resp) {
  return FinishUnary(
      ctx, absl::OkStatus(), resp, [&]() -> absl::StatusOr<v1::SubmitEnvelopeResponse> {
        absl::StatusOr<std::string> caller = Caller(*ctx);
        if (!caller.ok()) return caller.status();
        if (!caller->empty()) {
          // The TLS identity must be the envelope's sender (the hub admin signs as
          // "hub" from the hub's own identity).
          absl::StatusOr<v1::Envelope> e =
              trust::ParseEnvelope(req->envelope(), trust::EnvelopeLimits());
          if (!e.ok()) return e.status();
          if (e->sender_agency() != *caller) {
            return absl::PermissionDeniedError(absl::StrCat("the connection is agency ", *caller,
                                                            " but the envelope is from ",
                                                            e->sender_agency()));
          }
        }
        absl::StatusOr<v1::Receipt> receipt = core_->Submit(req->envelope());
        if (!receipt.ok()) return receipt.status();
        v1::SubmitEnvelopeResponse r;
        *r.mutable_receipt() = *std::move(receipt);
        return r;
      });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::GetReceipt(grpc::CallbackServerContext* ctx,
                                                           const v1::GetEnvelopeReceiptRequest* req,
                                                           v1::Receipt* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp, [&]() -> absl::StatusOr<v1::Receipt> {
    absl::StatusOr<std::string> caller = Caller(*ctx);
    if (!caller.ok()) return caller.status();
    if (!caller->empty() && *caller != req->sender_agency()) {
      return absl::PermissionDeniedError("an agency fetches receipts of its own envelopes only");
    }
    return core_->GetReceipt(req->sender_agency(), req->message_id());
  });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::GetAgency(grpc::CallbackServerContext* ctx,
                                                          const v1::GetAgencyRequest* req,
                                                          v1::AgencyRecord* resp) {
  return FinishUnary(ctx, absl::OkStatus(), resp, [&]() -> absl::StatusOr<v1::AgencyRecord> {
    absl::StatusOr<std::string> caller = Caller(*ctx);
    if (!caller.ok()) return caller.status();
    return core_->GetAgency(req->agency_id(), *caller, req->min_seq());
  });
}

grpc::ServerUnaryReactor* DirectoryGrpcService::SearchAgencies(grpc::CallbackServerContext* ctx,
                                                               const v1::SearchAgenciesRequest* req,
                                                               v1::SearchAgenciesResponse* resp) {
  return FinishUnary(
      ctx, absl::OkStatus(), resp, [&]() -> absl::StatusOr<v1::SearchAgenciesResponse> {
        absl::StatusOr<std::string> caller = Caller(*ctx);
        if (!caller.ok()) return caller.status();
        absl::StatusOr<std::vector<v1::AgencyRecord>> found = core_->Search(*req, *caller);
        if (!found.ok()) return found.status();
        v1::SearchAgenciesResponse r;
        for (auto& a : *found) *r.add_agencies() = std::move(a);
        return r;
      });
}

}  // namespace careloop::directory
