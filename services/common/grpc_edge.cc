#include "services/common/grpc_edge.h"

namespace careloop {

std::optional<std::string> PeerSpiffeId(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return std::nullopt;
  for (const grpc::string_ref& id : auth->FindPropertyValues("peer_spiffe_id")) {
    return std::string(id.data(), id.size());
  }
  return std::nullopt;
}

}  // namespace careloop
