// DirectoryService over gRPC. The caller's agency is its mTLS identity (the
// URI SAN spiffe://careloop/agency/<id>); a submitted envelope must be sent by
// that agency. In dev mode (no TLS) there is no identity: reads see what an
// anonymous agency sees, and submissions are checked by signature alone.
#pragma once

#include <optional>
#include <string>

#include "careloop/v1/directory.grpc.pb.h"
#include "services/directory/directory.h"

namespace careloop::directory {

class DirectoryGrpcService final : public v1::DirectoryService::CallbackService {
 public:
  DirectoryGrpcService(DirectoryCore* core, bool tls_required)
      : core_(core), tls_required_(tls_required) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitEnvelopeRequest* req,
                                   v1::SubmitEnvelopeResponse* resp) override;
  grpc::ServerUnaryReactor* GetReceipt(grpc::CallbackServerContext* ctx,
                                       const v1::GetEnvelopeReceiptRequest* req,
                                       v1::Receipt* resp) override;
  grpc::ServerUnaryReactor* GetAgency(grpc::CallbackServerContext* ctx,
                                      const v1::GetAgencyRequest* req,
                                      v1::AgencyRecord* resp) override;
  grpc::ServerUnaryReactor* SearchAgencies(grpc::CallbackServerContext* ctx,
                                           const v1::SearchAgenciesRequest* req,
                                           v1::SearchAgenciesResponse* resp) override;

 private:
  // The caller's agency; UNAUTHENTICATED when TLS is required and none is given.
  absl::StatusOr<std::string> Caller(const grpc::CallbackServerContext& ctx) const;

  DirectoryCore* core_;
  bool tls_required_;
};

}  // namespace careloop::directory
