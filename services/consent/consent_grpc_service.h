// ConsentService over gRPC: each call admitted by the consent table
// (policy::ConsentTable) for the caller CallerIdentity names, then the core.
#pragma once

#include "careloop/v1/consent.grpc.pb.h"
#include "services/common/grpc_edge.h"
#include "services/consent/consent_core.h"

namespace careloop::consent {

class ConsentGrpcService final : public v1::ConsentService::CallbackService {
 public:
  ConsentGrpcService(ConsentCore* core, const directory::Agencies* agencies, bool tls)
      : core_(core), tls_(tls), gate_(&policy::ConsentTable(), agencies, tls) {}

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
  grpc::ServerUnaryReactor* PreviewDisclosure(grpc::CallbackServerContext* ctx,
                                              const v1::PreviewDisclosureRequest* req,
                                              v1::PreviewDisclosureResponse* resp) override;
  grpc::ServerUnaryReactor* DisclosureReport(grpc::CallbackServerContext* ctx,
                                             const v1::DisclosureReportRequest* req,
                                             v1::DisclosureReportResponse* resp) override;
  grpc::ServerUnaryReactor* ListBreakGlass(grpc::CallbackServerContext* ctx,
                                           const v1::ListBreakGlassRequest* req,
                                           v1::ListBreakGlassResponse* resp) override;

 private:
  ConsentCore* core_;
  bool tls_;
  policy::Gate gate_;
  BlockingPool pool_{32};
};

}  // namespace careloop::consent
