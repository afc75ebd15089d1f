// The hub, for an edge run apart from it (DESIGN.md, "The agency edge"):
// HubClient over the hub's public gRPC services, each call made on a
// channel of its own per agency served. With TLS that channel presents the
// agency's client certificate (spiffe://careloop/agency/<id>), so the hub
// sees exactly that agency, as it sees any agency's own system; in dev mode
// (loopback, no TLS) the dev agency header stands in for it. Reads name the
// staff member acting in the x-careloop-actor header. The edge gains no
// power: the hub's policy decides every call.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/edge/hub_client.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace careloop::edge {

struct RemoteHubOptions {
  std::string address;  // HOST:PORT of the hub's agencies' listener
  // A directory with ca.crt (the deployment CA) and, per agency served,
  // agency-<id>.crt and agency-<id>.key (careloop certs agency). "" : dev
  // mode, no TLS (the hub must be on loopback).
  std::string certs_dir;
  absl::Duration deadline = absl::Seconds(30);
};

class GrpcHub final : public HubClient {
 public:
  explicit GrpcHub(RemoteHubOptions options);
  ~GrpcHub() override;

  absl::StatusOr<v1::SubmitReferralResponse> SubmitReferral(
      const v1::SubmitReferralRequest& req) override;
  absl::StatusOr<v1::Receipt> UpdateReferralStatus(const std::string& envelope) override;
  absl::StatusOr<v1::PostMessageResponse> PostMessage(const v1::PostMessageRequest& req) override;
  absl::StatusOr<v1::SubmitEnvelopeResponse> SubmitConsentChange(
      const std::string& envelope) override;
  absl::StatusOr<v1::Receipt> SubmitDirectoryChange(const std::string& envelope) override;

  absl::StatusOr<v1::ReferralView> GetReferral(const v1::GetReferralRequest& req,
                                               const Acting& who) override;
  absl::StatusOr<v1::ListReferralsResponse> Inbox(const v1::ListReferralsRequest& req,
                                                  const Acting& who) override;
  absl::StatusOr<v1::ListReferralsResponse> Sent(const v1::ListReferralsRequest& req,
                                                 const Acting& who) override;
  absl::StatusOr<v1::ResolveSubjectResponse> ResolveSubject(const v1::ResolveSubjectRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<v1::ConsentRecord> GetConsent(const v1::GetConsentRequest& req,
                                               const Acting& who) override;
  absl::StatusOr<v1::ListConsentsResponse> ListConsents(const v1::ListConsentsRequest& req,
                                                        const Acting& who) override;
  absl::StatusOr<v1::PreviewDisclosureResponse> PreviewDisclosure(
      const v1::PreviewDisclosureRequest& req, const Acting& who) override;
  absl::StatusOr<v1::AgencyRecord> GetAgency(const v1::GetAgencyRequest& req,
                                             const Acting& who) override;
  absl::StatusOr<std::vector<v1::AgencyRecord>> SearchAgencies(const v1::SearchAgenciesRequest& req,
                                                               const Acting& who) override;

  absl::StatusOr<v1::TrailResponse> Trail(const v1::TrailRequest& req, const Acting& who) override;
  absl::StatusOr<v1::DisclosureReportResponse> Report(const v1::DisclosureReportRequest& req,
                                                      const Acting& who) override;
  absl::StatusOr<v1::AccessResponse> Access(const v1::AccessRequest& req,
                                            const Acting& who) override;
  absl::StatusOr<v1::FiguresResponse> Figures(const v1::FiguresRequest& req,
                                              const Acting& who) override;
  absl::StatusOr<v1::ListBreakGlassResponse> ListBreakGlass(const v1::ListBreakGlassRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<v1::SignedHead> Head(const v1::AuditHeadRequest& req, const Acting& who) override;
  absl::StatusOr<v1::AuditConsistencyResponse> Consistency(const v1::AuditConsistencyRequest& req,
                                                           const Acting& who) override;
  absl::StatusOr<v1::ExportResponse> Export(const v1::ExportRequest& req,
                                            const Acting& who) override;

  absl::StatusOr<v1::CreateConsumerResponse> CreateConsumer(const v1::CreateConsumerRequest& req,
                                                            const Acting& who) override;
  absl::StatusOr<std::unique_ptr<ChangeStream>> Subscribe(const v1::SubscribeRequest& req,
                                                          const Acting& who) override;
  absl::StatusOr<v1::AckResponse> Ack(const v1::AckRequest& req, const Acting& who) override;

 private:
  // The agency's channel, made on first use (its certificate read then).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelFor(const std::string& agency)
      ABSL_LOCKS_EXCLUDED(mu_);
  // One unary call as `who`: `call(channel, ctx, &response)`.
  template <class Resp, class Fn>
  absl::StatusOr<Resp> Unary(const Acting& who, Fn&& call);
  // Identity metadata and the deadline for one call as `who`.
  void Prepare(grpc::ClientContext* ctx, const Acting& who, bool streaming) const;
  // The agency that signed an envelope (its channel carries the call).
  static absl::StatusOr<std::string> SenderOf(const std::string& envelope);

  const RemoteHubOptions options_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace careloop::edge
