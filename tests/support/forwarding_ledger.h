// A ledger that forwards every call to a real one; tests derive from it to
// hold back or fail the appends they are about, and nothing else.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "storage/ledger.h"

namespace careloop::testing {

class ForwardingLedger : public storage::Ledger {
 public:
  explicit ForwardingLedger(storage::Ledger* inner) : inner_(inner) {}

  void AppendAsync(v1::AppendRequest request, storage::AppendCallback done) override {
    inner_->AppendAsync(std::move(request), std::move(done));
  }
  absl::StatusOr<v1::ReadResponse> Read(const v1::ReadRequest& r) override {
    return inner_->Read(r);
  }
  absl::StatusOr<v1::ReadResponse> ReadStream(const v1::ReadStreamRequest& r) override {
    return inner_->ReadStream(r);
  }
  absl::StatusOr<v1::ReadResponse> ReadIndex(const v1::ReadIndexRequest& r) override {
    return inner_->ReadIndex(r);
  }
  absl::StatusOr<uint64_t> StreamVersion(absl::string_view stream) override {
    return inner_->StreamVersion(stream);
  }
  absl::StatusOr<v1::SignedHead> Head(uint64_t tree_size) override {
    return inner_->Head(tree_size);
  }
  absl::StatusOr<v1::InclusionProof> ProveInclusion(uint64_t seq, uint64_t tree_size) override {
    return inner_->ProveInclusion(seq, tree_size);
  }
  absl::StatusOr<v1::ConsistencyProof> ProveConsistency(uint64_t a, uint64_t b) override {
    return inner_->ProveConsistency(a, b);
  }
  absl::StatusOr<v1::Receipt> GetReceipt(uint64_t seq) override { return inner_->GetReceipt(seq); }
  absl::StatusOr<std::optional<uint64_t>> GetCursor(absl::string_view name) override {
    return inner_->GetCursor(name);
  }
  std::unique_ptr<storage::TailStream> Tail(uint64_t from_seq, bool include_payloads) override {
    return inner_->Tail(from_seq, include_payloads);
  }
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& directory) override {
    return inner_->Backup(directory);
  }

 protected:
  storage::Ledger* inner() const { return inner_; }

 private:
  storage::Ledger* inner_;
};

}  // namespace careloop::testing
