#include "services/ledger/remote_ledger.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <deque>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"

namespace careloop::ledger {
namespace {

class RemoteTailStream final : public storage::TailStream {
 public:
  RemoteTailStream(v1::LedgerService::Stub* stub, uint64_t from, bool payloads) {
    v1::TailRequest req;
    req.set_from_seq(from);
    req.set_include_payloads(payloads);
    reader_ = stub->Tail(&ctx_, req);
    thread_ = std::thread([this] { Pump(); });
  }
  ~RemoteTailStream() override {
    Cancel();
    thread_.join();
  }

  absl::StatusOr<std::vector<v1::Event>> Next(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !pending_.empty() || ended_ || cancelled_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (cancelled_) return absl::CancelledError("tail cancelled");
    if (!pending_.empty()) {
      std::vector<v1::Event> out(std::make_move_iterator(pending_.begin()),
                                 std::make_move_iterator(pending_.end()));
      pending_.clear();
      return out;
    }
    if (ended_)
      return end_status_.ok() ? absl::UnavailableError("the ledger ended the tail") : end_status_;
    return std::vector<v1::Event>();
  }

  void Cancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    ctx_.TryCancel();
  }

 private:
  void Pump() {
    v1::TailResponse resp;
    while (reader_->Read(&resp)) {
      absl::MutexLock lock(&mu_);
      for (auto& e : *resp.mutable_events()) pending_.push_back(std::move(e));
    }
    grpc::Status s = reader_->Finish();
    absl::MutexLock lock(&mu_);
    ended_ = true;
    end_status_ = FromGrpcStatus(s);
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::TailResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::deque<v1::Event> pending_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// gRPC 1.51 (with the epoll engine) runs client callbacks on one process-wide
// "alternative" completion queue that it tears down when the last channel that
// used it goes away, and builds again for the next one. Under AddressSanitizer
// that teardown raced into a double free when channels come and go (the
// integration tests restart hubs). One channel that never goes away keeps the
// queue alive for the process: it makes one callback call and is never freed.
struct CallbackQueuePin {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::LedgerService::Stub> stub;
  grpc::ClientContext ctx;
  v1::GetHeadRequest req;
  v1::SignedHead resp;
};

void PinCallbackQueue() {
  // Lives for the whole process on purpose; LeakSanitizer is told so, since
  // gRPC's internals behind it are not reachable in a way it can see.
  static CallbackQueuePin* pin = [] {
#if defined(__SANITIZE_ADDRESS__)
    __lsan::ScopedDisabler process_lifetime;
#endif
    auto* p = new CallbackQueuePin;
    p->channel = grpc::CreateChannel("unix:/nonexistent/careloop-callback-pin",
                                     grpc::InsecureChannelCredentials());
    p->stub = v1::LedgerService::NewStub(p->channel);
    p->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1));
    p->stub->async()->GetHead(&p->ctx, &p->req, &p->resp, [](const grpc::Status&) {});
    return p;
  }();
  (void)pin;
}

RemoteLedger::RemoteLedger(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : channel_(std::move(channel)),
      stub_(v1::LedgerService::NewStub(channel_)),
      deadline_(deadline) {
  PinCallbackQueue();
}

void RemoteLedger::SetDeadline(grpc::ClientContext* ctx) const {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
}

void RemoteLedger::AppendAsync(v1::AppendRequest request, storage::AppendCallback done) {
  // Owned by the callback, not by this object: a call may outlive the client.
  struct Call {
    grpc::ClientContext ctx;
    v1::AppendRequest req;
    v1::AppendResponse resp;
    storage::AppendCallback done;
  };
  auto* call = new Call;
  call->req = std::move(request);
  call->done = std::move(done);
  SetDeadline(&call->ctx);
  stub_->async()->Append(&call->ctx, &call->req, &call->resp, [call](const grpc::Status& s) {
    std::unique_ptr<Call> owned(call);
    if (s.ok()) {
      owned->done(std::move(*owned->resp.mutable_commit()));
    } else {
      owned->done(FromGrpcStatus(s));
    }
  });
}

#define CARELOOP_REMOTE_CALL(Method, req, Resp)     \
  grpc::ClientContext ctx;                          \
  SetDeadline(&ctx);                                \
  Resp resp;                                        \
  grpc::Status s = stub_->Method(&ctx, req, &resp); \
  if (!s.ok()) return FromGrpcStatus(s);

absl::StatusOr<v1::ReadResponse> RemoteLedger::Read(const v1::ReadRequest& req) {
  CARELOOP_REMOTE_CALL(Read, req, v1::ReadResponse);
  return resp;
}

absl::StatusOr<v1::ReadResponse> RemoteLedger::ReadStream(const v1::ReadStreamRequest& req) {
  CARELOOP_REMOTE_CALL(ReadStream, req, v1::ReadResponse);
  return resp;
}

absl::StatusOr<v1::ReadResponse> RemoteLedger::ReadIndex(const v1::ReadIndexRequest& req) {
  CARELOOP_REMOTE_CALL(ReadIndex, req, v1::ReadResponse);
  return resp;
}

absl::StatusOr<uint64_t> RemoteLedger::StreamVersion(absl::string_view stream) {
  v1::StreamVersionRequest req;
  req.set_stream(std::string(stream));
  CARELOOP_REMOTE_CALL(GetStreamVersion, req, v1::StreamVersionResponse);
  return resp.version();
}

absl::StatusOr<v1::SignedHead> RemoteLedger::Head(uint64_t tree_size) {
  v1::GetHeadRequest req;
  req.set_tree_size(tree_size);
  CARELOOP_REMOTE_CALL(GetHead, req, v1::SignedHead);
  return resp;
}

absl::StatusOr<v1::InclusionProof> RemoteLedger::ProveInclusion(uint64_t seq, uint64_t tree_size) {
  v1::ProveInclusionRequest req;
  req.set_seq(seq);
  req.set_tree_size(tree_size);
  CARELOOP_REMOTE_CALL(ProveInclusion, req, v1::InclusionProof);
  return resp;
}

absl::StatusOr<v1::ConsistencyProof> RemoteLedger::ProveConsistency(uint64_t size1,
                                                                    uint64_t size2) {
  v1::ProveConsistencyRequest req;
  req.set_size1(size1);
  req.set_size2(size2);
  CARELOOP_REMOTE_CALL(ProveConsistency, req, v1::ConsistencyProof);
  return resp;
}

absl::StatusOr<v1::Receipt> RemoteLedger::GetReceipt(uint64_t seq) {
  v1::GetReceiptRequest req;
  req.set_seq(seq);
  CARELOOP_REMOTE_CALL(GetReceipt, req, v1::Receipt);
  return resp;
}

absl::StatusOr<std::optional<uint64_t>> RemoteLedger::GetCursor(absl::string_view name) {
  v1::GetCursorRequest req;
  req.set_name(std::string(name));
  CARELOOP_REMOTE_CALL(GetCursor, req, v1::GetCursorResponse);
  if (!resp.exists()) return std::optional<uint64_t>();
  return std::optional<uint64_t>(resp.position());
}

std::unique_ptr<storage::TailStream> RemoteLedger::Tail(uint64_t from_seq, bool include_payloads) {
  return std::make_unique<RemoteTailStream>(stub_.get(), from_seq, include_payloads);
}

absl::StatusOr<v1::BackupResponse> RemoteLedger::Backup(const std::string& directory) {
  v1::BackupRequest req;
  req.set_directory(directory);
  CARELOOP_REMOTE_CALL(Backup, req, v1::BackupResponse);
  return resp;
}

}  // namespace careloop::ledger
