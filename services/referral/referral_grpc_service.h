// ReferralService over gRPC: each call admitted by the referral table
// (policy::ReferralTable) for the caller CallerIdentity names, then the core.
#pragma once

#include "careloop/v1/referral.grpc.pb.h"
#include "services/common/grpc_edge.h"
#include "services/referral/referral_core.h"

namespace careloop::referral {

class ReferralGrpcService final : public v1::ReferralService::CallbackService {
 public:
  // `submit_inline`: verify and plan a submission on gRPC's own thread and
  // answer it from the ledger's (no pool thread waits for the fsync). Only
  // with the ledger in this process: the plan reads the ledger, and reads
  // of a remote one would wait on the network on gRPC's thread.
  ReferralGrpcService(ReferralCore* core, const directory::Agencies* agencies, bool tls,
                      bool submit_inline = false)
      : core_(core),
        tls_(tls),
        submit_inline_(submit_inline),
        gate_(&policy::ReferralTable(), agencies, tls) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitReferralRequest* req,
                                   v1::SubmitReferralResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateStatus(grpc::CallbackServerContext* ctx,
                                         const v1::SubmitEnvelopeRequest* req,
                                         v1::Receipt* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetReferralRequest* req,
                                v1::ReferralView* resp) override;
  grpc::ServerUnaryReactor* Sent(grpc::CallbackServerContext* ctx,
                                 const v1::ListReferralsRequest* req,
                                 v1::ListReferralsResponse* resp) override;
  grpc::ServerUnaryReactor* PostMessage(grpc::CallbackServerContext* ctx,
                                        const v1::PostMessageRequest* req,
                                        v1::PostMessageResponse* resp) override;
  grpc::ServerUnaryReactor* Inbox(grpc::CallbackServerContext* ctx,
                                  const v1::ListReferralsRequest* req,
                                  v1::ListReferralsResponse* resp) override;

 private:
  // The envelope admitted for `method` (policy::Gate::AdmitEnvelope).
  absl::Status SenderIsCaller(const grpc::CallbackServerContext& ctx, absl::string_view method,
                              const std::string& envelope) const;

  ReferralCore* core_;
  bool tls_;
  bool submit_inline_;
  policy::Gate gate_;
  // Every referral RPC may wait (an fsync, a projection): off gRPC's threads.
  BlockingPool pool_{64};
};

}  // namespace careloop::referral
