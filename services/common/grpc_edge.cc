#include "services/common/grpc_edge.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/names/names.h"
#include "services/trust/envelope.h"

namespace careloop {

std::optional<std::string> PeerSpiffeId(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return std::nullopt;
  for (const grpc::string_ref& id : auth->FindPropertyValues("peer_spiffe_id")) {
    return std::string(id.data(), id.size());
  }
  return std::nullopt;
}

std::string CallerIdentity(const grpc::ServerContextBase& ctx, bool tls) {
  if (!tls) {
    auto it = ctx.client_metadata().find(kDevAgencyHeader);
    if (it == ctx.client_metadata().end()) return "";
    return std::string(it->second.data(), it->second.size());
  }
  const std::string id = PeerSpiffeId(ctx).value_or("");
  if (id == kHubSpiffeId) return names::kHubAgency;
  const std::string prefix = kAgencySpiffePrefix;
  if (id.size() > prefix.size() && id.compare(0, prefix.size(), prefix) == 0)
    return id.substr(prefix.size());
  return "";
}

std::optional<std::string> CallerAgency(const grpc::ServerContextBase& ctx) {
  const std::string id = PeerSpiffeId(ctx).value_or("");
  absl::string_view v = id;
  if (absl::ConsumePrefix(&v, kAgencySpiffePrefix) && !v.empty()) return std::string(v);
  return std::nullopt;
}

absl::Status EnvelopeSenderIsCaller(const grpc::ServerContextBase& ctx, bool tls,
                                    const std::string& envelope) {
  if (!tls) return absl::OkStatus();
  const std::string caller = CallerIdentity(ctx, tls);
  absl::StatusOr<v1::Envelope> e = trust::ParseEnvelope(envelope, trust::EnvelopeLimits());
  if (!e.ok()) return e.status();
  if (caller.empty() || e->sender_agency() != caller) {
    return absl::PermissionDeniedError(
        absl::StrCat("the connection is ", caller.empty() ? "no agency" : caller,
                     " but the envelope is from ", e->sender_agency()));
  }
  return absl::OkStatus();
}

BlockingPool::BlockingPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

BlockingPool::~BlockingPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void BlockingPool::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(fn));
}

void BlockingPool::Run() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](BlockingPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stop_ || !p->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

}  // namespace careloop
