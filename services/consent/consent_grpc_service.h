// ConsentService over gRPC. The caller is its mTLS identity: an agency
// (spiffe://careloop/agency/<id>) or the hub's own services
// (spiffe://careloop/hub, as "hub"). In dev mode (no TLS, loopback only) the
// caller names itself in the x-careloop-dev-agency metadata; that header is
// ignored whenever TLS is on.
#pragma once

#include "careloop/v1/consent.grpc.pb.h"
#include "services/common/grpc_edge.h"
#include "services/consent/consent_core.h"

namespace careloop::consent {

class ConsentGrpcService final : public v1::ConsentService::CallbackService {
 public:
  ConsentGrpcService(ConsentCore* core, bool tls) : core_(core), tls_(tls) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitEnvelopeRequest* req,
                                   v1::SubmitEnvelopeResponse* resp) override;
  grpc::ServerUnaryReactor* ResolveSubject(grpc::CallbackServerContext* ctx,
                                           const v1::ResolveSubjectRequest* req,
                                           v1::ResolveSubjectResponse* resp) override;
  grpc::ServerUnaryReactor* GetConsent(grpc::CallbackServerContext* ctx,
                                       const v1::GetConsentRequest* req,
                                       v1::ConsentRecord* resp) override;
  grpc::ServerUnaryReactor* ListConsents(grpc::CallbackServerContext* ctx,
                                         const v1::ListConsentsRequest* req,
                                         v1::ListConsentsResponse* resp) override;
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const v1::CheckConsentRequest* req,
                                  v1::CheckConsentResponse* resp) override;
  grpc::ServerUnaryReactor* DisclosureReport(grpc::CallbackServerContext* ctx,
                                             const v1::DisclosureReportRequest* req,
                                             v1::DisclosureReportResponse* resp) override;
  grpc::ServerUnaryReactor* ListBreakGlass(grpc::CallbackServerContext* ctx,
                                           const v1::ListBreakGlassRequest* req,
                                           v1::ListBreakGlassResponse* resp) override;

 private:
  // The calling agency, "hub", or "" (no identity: every read is refused).
  std::string Caller(const grpc::CallbackServerContext& ctx) const;

  ConsentCore* core_;
  bool tls_;
  BlockingPool pool_{32};
};

}  // namespace careloop::consent
