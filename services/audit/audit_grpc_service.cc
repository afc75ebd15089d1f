#include "services/audit/audit_grpc_service.h"

namespace careloop::audit {

namespace {

// Writes a bundle's lines one after another once the export is built (on
// the pool: it appends the export record and waits for its fsync).
class ExportReactor final : public grpc::ServerWriteReactor<v1::BundleLine> {
 public:
  explicit ExportReactor(const absl::Status& refused) { Finish(ToGrpcStatus(refused)); }
  ExportReactor(BlockingPool* pool, AuditCore* core, v1::ExportRequest req, std::string caller) {
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
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Query");
  return FinishUnaryOn(&pool_, ctx, c.status(), resp,
                       [this, req, caller = c.ok() ? c->CoreId() : std::string()] {
                         return core_->Query(*req, caller);
                       });
}

grpc::ServerUnaryReactor* AuditGrpcService::Trail(grpc::CallbackServerContext* ctx,
                                                  const v1::TrailRequest* req,
                                                  v1::TrailResponse* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Trail");
  return FinishUnaryOn(&pool_, ctx, c.status(), resp,
                       [this, req, caller = c.ok() ? c->CoreId() : std::string()] {
                         return core_->Trail(*req, caller);
                       });
}

grpc::ServerUnaryReactor* AuditGrpcService::Report(grpc::CallbackServerContext* ctx,
                                                   const v1::DisclosureReportRequest* req,
                                                   v1::DisclosureReportResponse* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Report");
  return FinishUnaryOn(&pool_, ctx, c.status(), resp,
                       [this, req, caller = c.ok() ? c->CoreId() : std::string()] {
                         return core_->Report(*req, caller);
                       });
}

grpc::ServerUnaryReactor* AuditGrpcService::Head(grpc::CallbackServerContext* ctx,
                                                 const v1::AuditHeadRequest* req,
                                                 v1::SignedHead* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Head");
  return FinishUnary(ctx, c.status(), resp, [&] { return core_->Head(*req, c->CoreId()); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Consistency(grpc::CallbackServerContext* ctx,
                                                        const v1::AuditConsistencyRequest* req,
                                                        v1::AuditConsistencyResponse* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Consistency");
  return FinishUnary(ctx, c.status(), resp, [&] { return core_->Consistency(*req, c->CoreId()); });
}

grpc::ServerUnaryReactor* AuditGrpcService::Inclusion(grpc::CallbackServerContext* ctx,
                                                      const v1::AuditInclusionRequest* req,
                                                      v1::Receipt* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Inclusion");
  return FinishUnary(ctx, c.status(), resp, [&] { return core_->Inclusion(*req, c->CoreId()); });
}

grpc::ServerWriteReactor<v1::BundleLine>* AuditGrpcService::Export(grpc::CallbackServerContext* ctx,
                                                                   const v1::ExportRequest* req) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "Export");
  if (!c.ok()) return new ExportReactor(c.status());
  return new ExportReactor(&pool_, core_, *req, c->CoreId());
}

grpc::ServerUnaryReactor* AuditGrpcService::FhirAuditEvents(grpc::CallbackServerContext* ctx,
                                                            const v1::FhirAuditEventsRequest* req,
                                                            v1::FhirAuditEventsResponse* resp) {
  absl::StatusOr<policy::Caller> c = Admitted(gate_, *ctx, tls_, "FhirAuditEvents");
  return FinishUnaryOn(&pool_, ctx, c.status(), resp,
                       [this, req, caller = c.ok() ? c->CoreId() : std::string()] {
                         return core_->FhirAuditEvents(*req, caller);
                       });
}

}  // namespace careloop::audit
