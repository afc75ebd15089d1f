// LedgerService over gRPC's callback API. Appends complete from the ledger's
// writer thread after the fsync, so no gRPC thread waits on the disk; Tail
// streams wake on commit through the ledger's commit listeners.
#pragma once

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "careloop/v1/ledger.grpc.pb.h"
#include "services/policy/policy.h"
#include "storage/local_ledger.h"

namespace careloop::ledger {

class LedgerGrpcService final : public v1::LedgerService::CallbackService {
 public:
  // How the ledger's own listener is reached: a unix socket in a 0700
  // directory (whoever reaches it runs as the hub), or TCP with mTLS, where
  // only the hub's service certificate (spiffe://careloop/hub) is admitted.
  // Never registered on the agencies' listener (careloopd's Hub::Serve).
  enum class Transport { kUnixSocket, kMutualTls };
  LedgerGrpcService(storage::LocalLedger* ledger, Transport transport)
      : ledger_(ledger),
        transport_(transport),
        gate_(&policy::LedgerTable(), nullptr, transport == Transport::kMutualTls) {}

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

  // Another component's part of every backup (the agency edge's), written
  // after the ledger's into the backup directory; null: none. Replacing it
  // waits for a backup that is writing it.
  using BackupPart = std::function<absl::Status(const std::string& backup_dir)>;
  void AlsoBackUp(BackupPart part) ABSL_LOCKS_EXCLUDED(part_mu_);

 private:
  // The ledger's table (policy::LedgerTable) for this connection.
  absl::Status CheckCaller(const grpc::ServerContextBase& ctx, absl::string_view method) const;

  absl::Mutex part_mu_;
  BackupPart backup_part_ ABSL_GUARDED_BY(part_mu_);
  storage::LocalLedger* ledger_;
  Transport transport_;
  policy::Gate gate_;
};

}  // namespace careloop::ledger
