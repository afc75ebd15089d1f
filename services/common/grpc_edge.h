// Helpers for the gRPC adapters of every service (the edge of the hub).
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/common/grpc_status.h"
#include "services/policy/policy.h"

namespace careloop {

// Finishes a unary callback call with `result`.
template <typename T>
void FinishWith(grpc::ServerUnaryReactor* reactor, T* resp, absl::StatusOr<T> result) {
  const absl::Status status = result.status();
  if (status.ok()) *resp = *std::move(result);
  reactor->Finish(ToGrpcStatus(status));
}

// Finishes a unary callback call: with `allowed` when it is an error (the
// caller may not make this call), else with what `fn` returns.
template <typename T, typename Fn>
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, const absl::Status& allowed,
                                      T* resp, Fn&& fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  FinishWith(reactor, resp, fn());
  return reactor;
}
// The same for a call the core admits itself (its reads take the caller).
template <typename T, typename Fn>
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, T* resp, Fn&& fn) {
  return FinishUnary(ctx, absl::OkStatus(), resp, std::forward<Fn>(fn));
}

// Threads for handlers that wait (for an fsync, for a projection). gRPC's
// callback threads must not block: a handler that waits on one caps how many
// calls are in flight at the size of gRPC's own small pool.
class BlockingPool {
 public:
  explicit BlockingPool(int threads);
  // Runs what is queued, then joins.
  ~BlockingPool();
  void Post(std::function<void()> fn);

 private:
  void Run();
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// FinishUnary with `fn` run on `pool`. `fn` must hold what it needs by value
// (the request and response pointers stay valid until the call finishes).
template <typename T, typename Fn>
grpc::ServerUnaryReactor* FinishUnaryOn(BlockingPool* pool, grpc::CallbackServerContext* ctx,
                                        const absl::Status& allowed, T* resp, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!allowed.ok()) {
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }
  pool->Post([reactor, resp, fn = std::move(fn)]() mutable { FinishWith(reactor, resp, fn()); });
  return reactor;
}

// The SPIFFE ID of the caller's verified client certificate (its single URI
// SAN), if the connection has one.
std::optional<std::string> PeerSpiffeId(const grpc::ServerContextBase& ctx);

inline constexpr char kAgencySpiffePrefix[] = "spiffe://careloop/agency/";
inline constexpr char kAdminSpiffePrefix[] = "spiffe://careloop/admin/";
inline constexpr char kHubSpiffeId[] = "spiffe://careloop/hub";
inline constexpr char kDevAgencyHeader[] = "x-careloop-dev-agency";
inline constexpr char kDevAdminHeader[] = "x-careloop-dev-admin";
// The staff member of the calling agency on whose behalf it calls (a
// directory user id, for the record of who read what; it grants nothing).
inline constexpr char kActorHeader[] = "x-careloop-actor";

// Who is calling, for every service. With TLS: the client certificate's
// single URI SAN: spiffe://careloop/hub (the hub's own services),
// spiffe://careloop/admin/<user> (a hub admin) or
// spiffe://careloop/agency/<id>; agency/hub, malformed ids and anything else
// are nobody, whatever CA issued them. In dev mode (no TLS, loopback only) the
// x-careloop-dev-agency or x-careloop-dev-admin header; the reserved id "hub"
// is nobody, and the hub's services have no header (they reach the ledger on
// its own socket). An agency caller's x-careloop-actor header becomes the
// caller's actor; a malformed one makes the caller nobody.
policy::Caller CallerIdentity(const grpc::ServerContextBase& ctx, bool tls);

// A call carrying a signed envelope, admitted by `gate` (policy::Gate::AdmitEnvelope):
// over mTLS the envelope's signer must be the connection's identity.
absl::Status AdmittedEnvelope(const policy::Gate& gate, const grpc::ServerContextBase& ctx,
                              bool tls, absl::string_view method, const std::string& envelope);

}  // namespace careloop
