#include "services/edge/grpc_hub.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status.h"
#include "careloop/v1/audit.grpc.pb.h"
#include "careloop/v1/consent.grpc.pb.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "careloop/v1/notification.grpc.pb.h"
#include "careloop/v1/referral.grpc.pb.h"
#include "services/common/grpc_edge.h"
#include "services/common/grpc_status.h"
#include "services/names/names.h"

namespace careloop::edge {
namespace {

// An agency's notifications over the hub's Subscribe stream: a reader
// thread hands what arrives to Next.
class GrpcStream final : public ChangeStream {
 public:
  GrpcStream(const std::shared_ptr<grpc::Channel>& channel,
             std::unique_ptr<grpc::ClientContext> ctx, const v1::SubscribeRequest& req)
      : stub_(v1::NotificationService::NewStub(channel)), ctx_(std::move(ctx)) {
    reader_ = stub_->Subscribe(ctx_.get(), req);
    thread_ = std::thread([this] { Read(); });
  }
  ~GrpcStream() override {
    Cancel();
    thread_.join();
  }

  absl::StatusOr<std::vector<v1::Notification>> Next(absl::Duration wait) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || ended_ || cancelled_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    if (cancelled_) return absl::CancelledError("the subscription was cancelled");
    if (!queue_.empty()) {
      std::vector<v1::Notification> out(std::make_move_iterator(queue_.begin()),
                                        std::make_move_iterator(queue_.end()));
      queue_.clear();
      return out;
    }
    if (ended_) {
      return end_.ok() ? absl::UnavailableError("the hub ended the subscription") : end_;
    }
    return std::vector<v1::Notification>();
  }

  void Cancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    ctx_->TryCancel();
  }

 private:
  void Read() {
    v1::Notification n;
    while (reader_->Read(&n)) {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(n));
      n = v1::Notification();
    }
    const absl::Status s = FromGrpcStatus(reader_->Finish());
    absl::MutexLock lock(&mu_);
    ended_ = true;
    end_ = s;
  }

  std::unique_ptr<v1::NotificationService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReader<v1::Notification>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::deque<v1::Notification> queue_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

GrpcHub::GrpcHub(RemoteHubOptions options) : options_(std::move(options)) {}
GrpcHub::~GrpcHub() = default;

absl::StatusOr<std::shared_ptr<grpc::Channel>> GrpcHub::ChannelFor(const std::string& agency) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(agency);
  if (it != channels_.end()) return it->second;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options_.certs_dir.empty()) {
    const std::filesystem::path dir(options_.certs_dir);
    grpc::SslCredentialsOptions o;
    ASSIGN_OR_RETURN(o.pem_root_certs, ReadFile((dir / "ca.crt").string()));
    absl::StatusOr<std::string> cert =
        ReadFile((dir / absl::StrCat("agency-", agency, ".crt")).string());
    absl::StatusOr<std::string> key =
        ReadFile((dir / absl::StrCat("agency-", agency, ".key")).string());
    if (!cert.ok() || !key.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the edge has no client certificate for agency ", agency, " in ",
                       options_.certs_dir, " (careloop certs agency --id ", agency, ")"));
    }
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
    creds = grpc::SslCredentials(o);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(options_.address, creds, args);
  channels_[agency] = channel;
  return channel;
}

void GrpcHub::Prepare(grpc::ClientContext* ctx, const Acting& who, bool streaming) const {
  if (options_.certs_dir.empty()) {
    // Dev: the hub admin's envelopes (the demo seed's) go as a dev admin.
    if (who.agency_id == names::kHubAgency) {
      ctx->AddMetadata(kDevAdminHeader, "hub-admin");
    } else {
      ctx->AddMetadata(kDevAgencyHeader, who.agency_id);
    }
  }
  if (!who.user_id.empty()) ctx->AddMetadata(kActorHeader, who.user_id);
  if (!streaming) ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
}

absl::StatusOr<std::string> GrpcHub::SenderOf(const std::string& envelope) {
  v1::Envelope e;
  if (!e.ParseFromString(envelope) || e.sender_agency().empty()) {
    return absl::InvalidArgumentError("the edge made an envelope without a sender");
  }
  return e.sender_agency();
}

template <class Resp, class Fn>
absl::StatusOr<Resp> GrpcHub::Unary(const Acting& who, Fn&& call) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, ChannelFor(who.agency_id));
  grpc::ClientContext ctx;
  Prepare(&ctx, who, /*streaming=*/false);
  Resp out;
  RETURN_IF_ERROR(FromGrpcStatus(call(channel, &ctx, &out)));
  return out;
}

absl::StatusOr<v1::SubmitReferralResponse> GrpcHub::SubmitReferral(
    const v1::SubmitReferralRequest& req) {
  ASSIGN_OR_RETURN(std::string sender, SenderOf(req.envelope()));
  return Unary<v1::SubmitReferralResponse>(Acting{sender, ""}, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->Submit(ctx, req, out);
  });
}

absl::StatusOr<v1::Receipt> GrpcHub::UpdateReferralStatus(const std::string& envelope) {
  ASSIGN_OR_RETURN(std::string sender, SenderOf(envelope));
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(envelope);
  return Unary<v1::Receipt>(Acting{sender, ""}, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->UpdateStatus(ctx, req, out);
  });
}

absl::StatusOr<v1::PostMessageResponse> GrpcHub::PostMessage(const v1::PostMessageRequest& req) {
  ASSIGN_OR_RETURN(std::string sender, SenderOf(req.envelope()));
  return Unary<v1::PostMessageResponse>(Acting{sender, ""}, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->PostMessage(ctx, req, out);
  });
}

absl::StatusOr<v1::SubmitEnvelopeResponse> GrpcHub::SubmitConsentChange(
    const std::string& envelope) {
  ASSIGN_OR_RETURN(std::string sender, SenderOf(envelope));
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(envelope);
  return Unary<v1::SubmitEnvelopeResponse>(Acting{sender, ""}, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->Submit(ctx, req, out);
  });
}

absl::StatusOr<v1::Receipt> GrpcHub::SubmitDirectoryChange(const std::string& envelope) {
  ASSIGN_OR_RETURN(std::string sender, SenderOf(envelope));
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(envelope);
  ASSIGN_OR_RETURN(
      v1::SubmitEnvelopeResponse r,
      Unary<v1::SubmitEnvelopeResponse>(Acting{sender, ""}, [&](auto ch, auto* ctx, auto* out) {
        return v1::DirectoryService::NewStub(ch)->Submit(ctx, req, out);
      }));
  return r.receipt();
}

absl::StatusOr<v1::ReferralView> GrpcHub::GetReferral(const v1::GetReferralRequest& req,
                                                      const Acting& who) {
  return Unary<v1::ReferralView>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->Get(ctx, req, out);
  });
}

absl::StatusOr<v1::ListReferralsResponse> GrpcHub::Inbox(const v1::ListReferralsRequest& req,
                                                         const Acting& who) {
  return Unary<v1::ListReferralsResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->Inbox(ctx, req, out);
  });
}

absl::StatusOr<v1::ListReferralsResponse> GrpcHub::Sent(const v1::ListReferralsRequest& req,
                                                        const Acting& who) {
  return Unary<v1::ListReferralsResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ReferralService::NewStub(ch)->Sent(ctx, req, out);
  });
}

absl::StatusOr<v1::ResolveSubjectResponse> GrpcHub::ResolveSubject(
    const v1::ResolveSubjectRequest& req, const Acting& who) {
  return Unary<v1::ResolveSubjectResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->ResolveSubject(ctx, req, out);
  });
}

absl::StatusOr<v1::ConsentRecord> GrpcHub::GetConsent(const v1::GetConsentRequest& req,
                                                      const Acting& who) {
  return Unary<v1::ConsentRecord>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->GetConsent(ctx, req, out);
  });
}

absl::StatusOr<v1::ListConsentsResponse> GrpcHub::ListConsents(const v1::ListConsentsRequest& req,
                                                               const Acting& who) {
  return Unary<v1::ListConsentsResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->ListConsents(ctx, req, out);
  });
}

absl::StatusOr<v1::PreviewDisclosureResponse> GrpcHub::PreviewDisclosure(
    const v1::PreviewDisclosureRequest& req, const Acting& who) {
  return Unary<v1::PreviewDisclosureResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->PreviewDisclosure(ctx, req, out);
  });
}

absl::StatusOr<v1::AgencyRecord> GrpcHub::GetAgency(const v1::GetAgencyRequest& req,
                                                    const Acting& who) {
  return Unary<v1::AgencyRecord>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::DirectoryService::NewStub(ch)->GetAgency(ctx, req, out);
  });
}

absl::StatusOr<std::vector<v1::AgencyRecord>> GrpcHub::SearchAgencies(
    const v1::SearchAgenciesRequest& req, const Acting& who) {
  ASSIGN_OR_RETURN(v1::SearchAgenciesResponse r,
                   Unary<v1::SearchAgenciesResponse>(who, [&](auto ch, auto* ctx, auto* out) {
                     return v1::DirectoryService::NewStub(ch)->SearchAgencies(ctx, req, out);
                   }));
  return std::vector<v1::AgencyRecord>(r.agencies().begin(), r.agencies().end());
}

absl::StatusOr<v1::TrailResponse> GrpcHub::Trail(const v1::TrailRequest& req, const Acting& who) {
  return Unary<v1::TrailResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Trail(ctx, req, out);
  });
}

absl::StatusOr<v1::DisclosureReportResponse> GrpcHub::Report(const v1::DisclosureReportRequest& req,
                                                             const Acting& who) {
  return Unary<v1::DisclosureReportResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Report(ctx, req, out);
  });
}

absl::StatusOr<v1::AccessResponse> GrpcHub::Access(const v1::AccessRequest& req,
                                                   const Acting& who) {
  return Unary<v1::AccessResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Access(ctx, req, out);
  });
}

absl::StatusOr<v1::FiguresResponse> GrpcHub::Figures(const v1::FiguresRequest& req,
                                                     const Acting& who) {
  return Unary<v1::FiguresResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Figures(ctx, req, out);
  });
}

absl::StatusOr<v1::ListBreakGlassResponse> GrpcHub::ListBreakGlass(
    const v1::ListBreakGlassRequest& req, const Acting& who) {
  return Unary<v1::ListBreakGlassResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::ConsentService::NewStub(ch)->ListBreakGlass(ctx, req, out);
  });
}

absl::StatusOr<v1::SignedHead> GrpcHub::Head(const v1::AuditHeadRequest& req, const Acting& who) {
  return Unary<v1::SignedHead>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Head(ctx, req, out);
  });
}

absl::StatusOr<v1::AuditConsistencyResponse> GrpcHub::Consistency(
    const v1::AuditConsistencyRequest& req, const Acting& who) {
  return Unary<v1::AuditConsistencyResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::AuditService::NewStub(ch)->Consistency(ctx, req, out);
  });
}

absl::StatusOr<v1::ExportResponse> GrpcHub::Export(const v1::ExportRequest& req,
                                                   const Acting& who) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, ChannelFor(who.agency_id));
  grpc::ClientContext ctx;
  Prepare(&ctx, who, /*streaming=*/false);
  std::unique_ptr<grpc::ClientReader<v1::BundleLine>> reader =
      v1::AuditService::NewStub(channel)->Export(&ctx, req);
  v1::ExportResponse out;
  v1::BundleLine line;
  while (reader->Read(&line)) *out.add_lines() = std::move(line);
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return out;
}

absl::StatusOr<v1::CreateConsumerResponse> GrpcHub::CreateConsumer(
    const v1::CreateConsumerRequest& req, const Acting& who) {
  return Unary<v1::CreateConsumerResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::NotificationService::NewStub(ch)->CreateConsumer(ctx, req, out);
  });
}

absl::StatusOr<std::unique_ptr<ChangeStream>> GrpcHub::Subscribe(const v1::SubscribeRequest& req,
                                                                 const Acting& who) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, ChannelFor(who.agency_id));
  auto ctx = std::make_unique<grpc::ClientContext>();
  Prepare(ctx.get(), who, /*streaming=*/true);
  return std::unique_ptr<ChangeStream>(new GrpcStream(channel, std::move(ctx), req));
}

absl::StatusOr<v1::AckResponse> GrpcHub::Ack(const v1::AckRequest& req, const Acting& who) {
  return Unary<v1::AckResponse>(who, [&](auto ch, auto* ctx, auto* out) {
    return v1::NotificationService::NewStub(ch)->Ack(ctx, req, out);
  });
}

}  // namespace careloop::edge
