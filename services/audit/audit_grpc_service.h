// AuditService over gRPC: the caller CallerIdentity names, passed to the
// core, which admits it by the audit table (policy::AuditTable) and decides
// what an admitted caller sees.
#pragma once

#include "careloop/v1/audit.grpc.pb.h"
#include "services/audit/audit_core.h"
#include "services/common/grpc_edge.h"

namespace careloop::audit {

class AuditGrpcService final : public v1::AuditService::CallbackService {
 public:
  AuditGrpcService(AuditCore* core, bool tls) : core_(core), tls_(tls) {}

  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* ctx,
                                  const v1::AuditQueryRequest* req,
                                  v1::AuditQueryResponse* resp) override;
  grpc::ServerUnaryReactor* Access(grpc::CallbackServerContext* ctx, const v1::AccessRequest* req,
                                   v1::AccessResponse* resp) override;
  grpc::ServerUnaryReactor* Figures(grpc::CallbackServerContext* ctx, const v1::FiguresRequest* req,
                                    v1::FiguresResponse* resp) override;
  grpc::ServerUnaryReactor* Trail(grpc::CallbackServerContext* ctx, const v1::TrailRequest* req,
                                  v1::TrailResponse* resp) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx,
                                   const v1::DisclosureReportRequest* req,
                                   v1::DisclosureReportResponse* resp) override;
  grpc::ServerUnaryReactor* Head(grpc::CallbackServerContext* ctx, const v1::AuditHeadRequest* req,
                                 v1::SignedHead* resp) override;
  grpc::ServerUnaryReactor* Consistency(grpc::CallbackServerContext* ctx,
                                        const v1::AuditConsistencyRequest* req,
                                        v1::AuditConsistencyResponse* resp) override;
  grpc::ServerUnaryReactor* Inclusion(grpc::CallbackServerContext* ctx,
                                      const v1::AuditInclusionRequest* req,
                                      v1::Receipt* resp) override;
  grpc::ServerWriteReactor<v1::BundleLine>* Export(grpc::CallbackServerContext* ctx,
                                                   const v1::ExportRequest* req) override;
  grpc::ServerUnaryReactor* FhirAuditEvents(grpc::CallbackServerContext* ctx,
                                            const v1::FhirAuditEventsRequest* req,
                                            v1::FhirAuditEventsResponse* resp) override;

 private:
  AuditCore* core_;
  bool tls_;
  // Queries read much and record themselves (an fsync): off gRPC's threads.
  BlockingPool pool_{8};
};

}  // namespace careloop::audit
