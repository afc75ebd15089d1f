// DirectoryService over gRPC: each call admitted by the directory table
// (policy::DirectoryTable) for the caller CallerIdentity names, then the core.
#pragma once

#include <optional>
#include <string>

#include "careloop/v1/directory.grpc.pb.h"
#include "services/directory/directory.h"
#include "services/policy/policy.h"

namespace careloop::directory {

class DirectoryGrpcService final : public v1::DirectoryService::CallbackService {
 public:
  DirectoryGrpcService(DirectoryCore* core, const Agencies* agencies, bool tls)
      : core_(core), tls_(tls), gate_(&policy::DirectoryTable(), agencies, tls) {}

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
  DirectoryCore* core_;
  bool tls_;
  policy::Gate gate_;
};

}  // namespace careloop::directory
