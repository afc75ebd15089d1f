// LedgerService over gRPC's callback API. Appends complete from the ledger's
// writer thread after the fsync, so no gRPC thread waits on the disk; Tail
// streams wake on commit through the ledger's commit listeners.
#pragma once

#include "careloop/v1/ledger.grpc.pb.h"
#include "storage/local_ledger.h"

namespace careloop::ledger {

class LedgerGrpcService final : public v1::LedgerService::CallbackService {
 public:
  // With TLS, only the hub's own services (client certificate URI SAN
  // spiffe://careloop/hub) may call; agencies never reach the ledger.
  LedgerGrpcService(storage::LocalLedger* ledger, bool tls_required = false)
      : ledger_(ledger), tls_required_(tls_required) {}

  grpc::ServerUnaryReactor* Append(grpc::CallbackServerContext* ctx, const v1::AppendRequest* req,
                                   v1::AppendResponse* resp) override;
  grpc::ServerUnaryReactor* Read(grpc::CallbackServerContext* ctx, const v1::ReadRequest* req,
                                 v1::ReadResponse* resp) override;
  grpc::ServerUnaryReactor* ReadStream(grpc::CallbackServerContext* ctx,
                                       const v1::ReadStreamRequest* req,
                                       v1::ReadResponse* resp) override;
  grpc::ServerUnaryReactor* ReadIndex(grpc::CallbackServerContext* ctx,
                                      const v1::ReadIndexRequest* req,
                                      v1::ReadResponse* resp) override;
  grpc::ServerUnaryReactor* GetStreamVersion(grpc::CallbackServerContext* ctx,
                                             const v1::StreamVersionRequest* req,
                                             v1::StreamVersionResponse* resp) override;
  grpc::ServerWriteReactor<v1::TailResponse>* Tail(grpc::CallbackServerContext* ctx,
                                                   const v1::TailRequest* req) override;
  grpc::ServerUnaryReactor* GetHead(grpc::CallbackServerContext* ctx, const v1::GetHeadRequest* req,
                                    v1::SignedHead* resp) override;
  grpc::ServerUnaryReactor* ProveInclusion(grpc::CallbackServerContext* ctx,
                                           const v1::ProveInclusionRequest* req,
                                           v1::InclusionProof* resp) override;
  grpc::ServerUnaryReactor* ProveConsistency(grpc::CallbackServerContext* ctx,
                                             const v1::ProveConsistencyRequest* req,
                                             v1::ConsistencyProof* resp) override;
  grpc::ServerUnaryReactor* GetReceipt(grpc::CallbackServerContext* ctx,
                                       const v1::GetReceiptRequest* req,
                                       v1::Receipt* resp) override;
  grpc::ServerUnaryReactor* GetCursor(grpc::CallbackServerContext* ctx,
                                      const v1::GetCursorRequest* req,
                                      v1::GetCursorResponse* resp) override;
  grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* ctx, const v1::BackupRequest* req,
                                   v1::BackupResponse* resp) override;

 private:
  absl::Status CheckCaller(const grpc::ServerContextBase& ctx) const;

  storage::LocalLedger* ledger_;
  bool tls_required_;
};

}  // namespace careloop::ledger
