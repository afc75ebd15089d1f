#include "services/ledger/ledger_grpc_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "services/common/grpc_edge.h"
#include "services/common/grpc_status.h"

namespace careloop::ledger {
namespace {

constexpr uint32_t kTailBatch = 256;

// Streams events from a position on. Lock order: Guard::mu, then mu_. gRPC
// reactions may run on any thread; OnDone is the last one.
class TailReactor final : public grpc::ServerWriteReactor<v1::TailResponse> {
 public:
  TailReactor(storage::LocalLedger* ledger, const v1::TailRequest& req)
      : ledger_(ledger),
        next_(std::max<uint64_t>(1, req.from_seq())),
        payloads_(req.include_payloads()) {
    guard_ = std::make_shared<Guard>();
    guard_->reactor = this;
    std::shared_ptr<Guard> g = guard_;
    listener_ = ledger_->AddCommitListener([g](uint64_t) {
      absl::MutexLock lock(&g->mu);
      if (g->reactor != nullptr) g->reactor->MaybeSend();
    });
    absl::MutexLock lock(&guard_->mu);
    MaybeSend();
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if ((!ok || cancelled_) && !finished_) {
        finished_ = true;
        finish = true;
      }
    }
    if (finish) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "tail cancelled"));
      return;
    }
    absl::MutexLock lock(&guard_->mu);
    MaybeSend();
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!writing_ && !finished_) {
        finished_ = true;
        finish = true;
      }
    }
    if (finish) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "tail cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&guard_->mu);
      guard_->reactor = nullptr;
    }
    ledger_->RemoveCommitListener(listener_);
    delete this;
  }

 private:
  struct Guard {
    absl::Mutex mu;
    TailReactor* reactor = nullptr;
  };

  // Sends the next batch if none is in flight and there is one. Called with
  // guard_->mu held, so OnDone cannot delete the reactor meanwhile.
  void MaybeSend() {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || cancelled_) return;
      if (ledger_->size() < next_) return;  // caught up: the next commit wakes us
      v1::ReadRequest req;
      req.set_from_seq(next_);
      req.set_limit(kTailBatch);
      req.set_include_payloads(payloads_);
      absl::StatusOr<v1::ReadResponse> read = ledger_->Read(req);
      if (!read.ok()) {
        finished_ = true;
        error = read.status();
      } else if (read->events().empty()) {
        return;
      } else {
        response_.Clear();
        response_.mutable_events()->Swap(read->mutable_events());
        next_ = response_.events(response_.events_size() - 1).header().seq() + 1;
        writing_ = true;
      }
    }
    if (!error.ok()) {
      Finish(ToGrpcStatus(error));
      return;
    }
    StartWrite(&response_);
  }

  storage::LocalLedger* ledger_;
  std::shared_ptr<Guard> guard_;
  uint64_t listener_ = 0;
  absl::Mutex mu_;
  uint64_t next_;
  bool payloads_;
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  v1::TailResponse response_;
};

// A Tail the policy refused: finishes at once.
class RefusedTail final : public grpc::ServerWriteReactor<v1::TailResponse> {
 public:
  explicit RefusedTail(const absl::Status& refused) { Finish(ToGrpcStatus(refused)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::Status LedgerGrpcService::CheckCaller(const grpc::ServerContextBase& ctx,
                                            absl::string_view method) const {
  // On the unix socket the 0700 directory around it is the check: whoever
  // reaches it runs as the hub. Over TCP, the hub's own certificate only.
  const policy::Caller caller = transport_ == Transport::kMutualTls ? CallerIdentity(ctx, true)
                                                                    : policy::Caller::HubService();
  return gate_.Admit(caller, method);
}

grpc::ServerUnaryReactor* LedgerGrpcService::Append(grpc::CallbackServerContext* ctx,
                                                    const v1::AppendRequest* req,
                                                    v1::AppendResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status allowed = CheckCaller(*ctx, "Append"); !allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  ledger_->AppendAsync(*req, [reactor, resp](absl::StatusOr<v1::Commit> result) {
    const absl::Status status = result.status();
    if (status.ok()) *resp->mutable_commit() = *std::move(result);
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

grpc::ServerUnaryReactor* LedgerGrpcService::Read(grpc::CallbackServerContext* ctx,
                                                  const v1::ReadRequest* req,
                                                  v1::ReadResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "Read"), resp, [&] { return ledger_->Read(*req); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::ReadStream(grpc::CallbackServerContext* ctx,
                                                        const v1::ReadStreamRequest* req,
                                                        v1::ReadResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "ReadStream"), resp,
                     [&] { return ledger_->ReadStream(*req); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::ReadIndex(grpc::CallbackServerContext* ctx,
                                                       const v1::ReadIndexRequest* req,
                                                       v1::ReadResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "ReadIndex"), resp,
                     [&] { return ledger_->ReadIndex(*req); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::GetStreamVersion(grpc::CallbackServerContext* ctx,
                                                              const v1::StreamVersionRequest* req,
                                                              v1::StreamVersionResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "GetStreamVersion"), resp,
                     [&]() -> absl::StatusOr<v1::StreamVersionResponse> {
                       absl::StatusOr<uint64_t> v = ledger_->StreamVersion(req->stream());
                       if (!v.ok()) return v.status();
                       v1::StreamVersionResponse r;
                       r.set_version(*v);
                       return r;
                     });
}

grpc::ServerWriteReactor<v1::TailResponse>* LedgerGrpcService::Tail(
    grpc::CallbackServerContext* ctx, const v1::TailRequest* req) {
  if (absl::Status allowed = CheckCaller(*ctx, "Tail"); !allowed.ok())
    return new RefusedTail(allowed);
  return new TailReactor(ledger_, *req);
}

grpc::ServerUnaryReactor* LedgerGrpcService::GetHead(grpc::CallbackServerContext* ctx,
                                                     const v1::GetHeadRequest* req,
                                                     v1::SignedHead* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "GetHead"), resp,
                     [&] { return ledger_->Head(req->tree_size()); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::ProveInclusion(grpc::CallbackServerContext* ctx,
                                                            const v1::ProveInclusionRequest* req,
                                                            v1::InclusionProof* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "ProveInclusion"), resp,
                     [&] { return ledger_->ProveInclusion(req->seq(), req->tree_size()); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::ProveConsistency(
    grpc::CallbackServerContext* ctx, const v1::ProveConsistencyRequest* req,
    v1::ConsistencyProof* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "ProveConsistency"), resp,
                     [&] { return ledger_->ProveConsistency(req->size1(), req->size2()); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::GetReceipt(grpc::CallbackServerContext* ctx,
                                                        const v1::GetReceiptRequest* req,
                                                        v1::Receipt* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "GetReceipt"), resp,
                     [&] { return ledger_->GetReceipt(req->seq()); });
}

grpc::ServerUnaryReactor* LedgerGrpcService::GetCursor(grpc::CallbackServerContext* ctx,
                                                       const v1::GetCursorRequest* req,
                                                       v1::GetCursorResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "GetCursor"), resp,
                     [&]() -> absl::StatusOr<v1::GetCursorResponse> {
                       absl::StatusOr<std::optional<uint64_t>> c = ledger_->GetCursor(req->name());
                       if (!c.ok()) return c.status();
                       v1::GetCursorResponse r;
                       r.set_exists(c->has_value());
                       r.set_position(c->value_or(0));
                       return r;
                     });
}

grpc::ServerUnaryReactor* LedgerGrpcService::Backup(grpc::CallbackServerContext* ctx,
                                                    const v1::BackupRequest* req,
                                                    v1::BackupResponse* resp) {
  return FinishUnary(ctx, CheckCaller(*ctx, "Backup"), resp,
                     [&]() -> absl::StatusOr<v1::BackupResponse> {
                       ASSIGN_OR_RETURN(v1::BackupResponse r, ledger_->Backup(req->directory()));
                       absl::MutexLock lock(&part_mu_);
                       if (backup_part_) {
                         const absl::Status s = backup_part_(req->directory());
                         if (!s.ok()) {
                           return absl::Status(s.code(), absl::StrCat("the ledger was backed up "
                                                                      "but not the edge: ",
                                                                      s.message()));
                         }
                       }
                       return r;
                     });
}

void LedgerGrpcService::AlsoBackUp(BackupPart part) {
  absl::MutexLock lock(&part_mu_);
  backup_part_ = std::move(part);
}

}  // namespace careloop::ledger
