#include "services/audit/audit_grpc_service.h"

namespace careloop::audit {

namespace {

// Writes a bundle's lines one after another once the export is built (on
// the pool: it appends the export record and waits for its fsync).
class ExportReactor final : public grpc::ServerWriteReactor<v1::BundleLine> {
 public:
  ExportReactor(BlockingPool* pool, AuditCore* core, v1::ExportRequest req, policy::Caller caller) {
    pool->Post([this, core, req = std::move(req), caller = std::move(caller)] {
      absl::StatusOr<v1::ExportResponse> b = core->Export(req, caller);
      if (!b.ok()) {
        Finish(ToGrpcStatus(b.status()));
        return;
      }
      bundle_ = *std::move(b);
      Next();
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ >= bundle_.lines_size()) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&bundle_.lines(next_++));
  }
  v1::ExportResponse bundle_;
  int next_ = 0;
};

}  // namespace

grpc::ServerUnaryReactor* AuditGrpcService::Query(grpc::CallbackServerContext* ctx,
                                                  const v1::AuditQueryRequest* req,
                                                  v1::AuditQueryResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Query(*req, caller); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Trail(grpc::CallbackServerContext* ctx,
                                                  const v1::TrailRequest* req,
                                                  v1::TrailResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Trail(*req, caller); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Report(grpc::CallbackServerContext* ctx,
                                                   const v1::DisclosureReportRequest* req,
                                                   v1::DisclosureReportResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Report(*req, caller); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Head(grpc::CallbackServerContext* ctx,
                                                 const v1::AuditHeadRequest* req,
                                                 v1::SignedHead* resp) {
  return FinishUnary(ctx, resp, [&] { return core_->Head(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Consistency(grpc::CallbackServerContext* ctx,
                                                        const v1::AuditConsistencyRequest* req,
                                                        v1::AuditConsistencyResponse* resp) {
  return FinishUnary(ctx, resp,
                     [&] { return core_->Consistency(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Inclusion(grpc::CallbackServerContext* ctx,
                                                      const v1::AuditInclusionRequest* req,
                                                      v1::Receipt* resp) {
  return FinishUnary(ctx, resp, [&] { return core_->Inclusion(*req, CallerIdentity(*ctx, tls_)); });
}

grpc::ServerWriteReactor<v1::BundleLine>* AuditGrpcService::Export(grpc::CallbackServerContext* ctx,
                                                                   const v1::ExportRequest* req) {
  return new ExportReactor(&pool_, core_, *req, CallerIdentity(*ctx, tls_));
}

grpc::ServerUnaryReactor* AuditGrpcService::FhirAuditEvents(grpc::CallbackServerContext* ctx,
                                                            const v1::FhirAuditEventsRequest* req,
                                                            v1::FhirAuditEventsResponse* resp) {
  return FinishUnaryOn(&pool_, ctx, absl::OkStatus(), resp,
                       [this, req, caller = CallerIdentity(*ctx, tls_)] {
                         return core_->FhirAuditEvents(*req, caller);
                       });
}

grpc::ServerUnaryReactor* AuditGrpcService::Access(grpc::CallbackServerContext* ctx,
                                                   const v1::AccessRequest* req,
                                                   v1::AccessResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Access(*req, caller); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Figures(grpc::CallbackServerContext* ctx,
                                                    const v1::FiguresRequest* req,
                                                    v1::FiguresResponse* resp) {
  return FinishUnaryOn(
      &pool_, ctx, absl::OkStatus(), resp,
      [this, req, caller = CallerIdentity(*ctx, tls_)] { return core_->Figures(*req, caller); });
}

}  // namespace careloop::audit
