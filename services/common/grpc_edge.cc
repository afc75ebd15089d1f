#include "services/common/grpc_edge.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status.h"
#include "services/names/names.h"
#include "storage/validate.h"

namespace careloop {

std::optional<std::string> PeerSpiffeId(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return std::nullopt;
  for (const grpc::string_ref& id : auth->FindPropertyValues("peer_spiffe_id")) {
    return std::string(id.data(), id.size());
  }
  return std::nullopt;
}

namespace {

std::string Metadata(const grpc::ServerContextBase& ctx, const char* key) {
  auto it = ctx.client_metadata().find(key);
  if (it == ctx.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// An agency id the hub could have registered: valid, and not the hub's own.
bool AgencyIdAccepted(const std::string& id) {
  return !id.empty() && id != names::kHubAgency && storage::ValidateAgencyId(id).ok();
}
bool UserIdAccepted(const std::string& id) {
  return !id.empty() && storage::ValidateToken(id, "user id").ok();
}

}  // namespace

namespace {

// The connection's identity, before the actor it names.
policy::Caller Identity(const grpc::ServerContextBase& ctx, bool tls) {
  if (!tls) {
    const std::string agency = Metadata(ctx, kDevAgencyHeader);
    const std::string admin = Metadata(ctx, kDevAdminHeader);
    if (!agency.empty() && admin.empty())
      return AgencyIdAccepted(agency) ? policy::Caller::Agency(agency) : policy::Caller::None();
    if (!admin.empty() && agency.empty())
      return UserIdAccepted(admin) ? policy::Caller::HubAdmin(admin) : policy::Caller::None();
    return policy::Caller::None();
  }
  const std::string id = PeerSpiffeId(ctx).value_or("");
  if (id == kHubSpiffeId) return policy::Caller::HubService();
  absl::string_view rest = id;
  if (absl::ConsumePrefix(&rest, kAgencySpiffePrefix)) {
    std::string agency(rest);
    return AgencyIdAccepted(agency) ? policy::Caller::Agency(agency) : policy::Caller::None();
  }
  if (absl::ConsumePrefix(&rest, kAdminSpiffePrefix)) {
    std::string user(rest);
    return UserIdAccepted(user) ? policy::Caller::HubAdmin(user) : policy::Caller::None();
  }
  return policy::Caller::None();
}

}  // namespace

policy::Caller CallerIdentity(const grpc::ServerContextBase& ctx, bool tls) {
  policy::Caller caller = Identity(ctx, tls);
  const std::string actor = Metadata(ctx, kActorHeader);
  if (actor.empty() || !caller.is_agency()) return caller;
  if (!UserIdAccepted(actor)) return policy::Caller::None();
  caller.actor = actor;
  return caller;
}

absl::Status AdmittedEnvelope(const policy::Gate& gate, const grpc::ServerContextBase& ctx,
                              bool tls, absl::string_view method, const std::string& envelope) {
  return gate.AdmitEnvelope(CallerIdentity(ctx, tls), method, envelope);
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
