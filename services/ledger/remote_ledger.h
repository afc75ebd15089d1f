// The Ledger interface over gRPC: a LedgerService in another process. Every
// call carries a deadline; errors come back with the server's status code.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "careloop/v1/ledger.grpc.pb.h"
#include "storage/ledger.h"

namespace careloop::ledger {

class RemoteLedger final : public storage::Ledger {
 public:
  explicit RemoteLedger(std::shared_ptr<grpc::Channel> channel,
                        absl::Duration deadline = absl::Seconds(30));

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
  void SetDeadline(grpc::ClientContext* ctx) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LedgerService::Stub> stub_;
  absl::Duration deadline_;
};

}  // namespace careloop::ledger
