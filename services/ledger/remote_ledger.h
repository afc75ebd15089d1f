// The Ledger interface over gRPC: a LedgerService in another process. Every
// call carries a deadline; errors come back with the server's status code.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "careloop/v1/ledger.grpc.pb.h"
#include "storage/ledger.h"

namespace careloop::ledger {

class RemoteLedger final : public storage::Ledger {
 public:
  explicit RemoteLedger(std::shared_ptr<grpc::Channel> channel,
                        absl::Duration deadline = absl::Seconds(30));
  // Cancels calls still in flight (their callbacks get CANCELLED) and waits
  // for every callback to finish.
  ~RemoteLedger() override;

  void AppendAsync(v1::AppendRequest request, storage::AppendCallback done) override;
  absl::StatusOr<v1::ReadResponse> Read(const v1::ReadRequest& req) override;
  absl::StatusOr<v1::ReadResponse> ReadStream(const v1::ReadStreamRequest& req) override;
  absl::StatusOr<v1::ReadResponse> ReadIndex(const v1::ReadIndexRequest& req) override;
  absl::StatusOr<uint64_t> StreamVersion(absl::string_view stream) override;
  absl::StatusOr<v1::SignedHead> Head(uint64_t tree_size = 0) override;
  absl::StatusOr<v1::InclusionProof> ProveInclusion(uint64_t seq, uint64_t tree_size) override;
  absl::StatusOr<v1::ConsistencyProof> ProveConsistency(uint64_t size1, uint64_t size2) override;
  absl::StatusOr<v1::Receipt> GetReceipt(uint64_t seq) override;
  absl::StatusOr<std::optional<uint64_t>> GetCursor(absl::string_view name) override;
  std::unique_ptr<storage::TailStream> Tail(uint64_t from_seq, bool include_payloads) override;
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& directory) override;

 private:
  struct AsyncAppend;
  void SetDeadline(grpc::ClientContext* ctx) const;
  void DriveCompletions();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LedgerService::Stub> stub_;
  absl::Duration deadline_;
  // Appends complete on this object's own completion queue and thread (not
  // gRPC's shared callback queue), so the client's lifetime is self-contained.
  grpc::CompletionQueue cq_;
  std::thread cq_thread_;
  absl::Mutex calls_mu_;
  absl::flat_hash_set<AsyncAppend*> calls_ ABSL_GUARDED_BY(calls_mu_);
  bool closing_ ABSL_GUARDED_BY(calls_mu_) = false;
};

}  // namespace careloop::ledger
