#include "services/edge/signer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/trust/envelope.h"

namespace careloop::edge {

bool Holds(const StaffMember& who, const std::string& role) {
  for (const std::string& r : who.roles) {
    if (r == role) return true;
  }
  return false;
}

absl::Status RequireRole(const StaffMember& who, const std::string& role) {
  if (who.disabled) return absl::PermissionDeniedError("this account is disabled");
  if (!Holds(who, role)) {
    return absl::PermissionDeniedError(
        absl::StrCat("this needs the ", role, " role, which your account does not have"));
  }
  return absl::OkStatus();
}

Acting ActingOf(const StaffMember& who) { return Acting{who.agency_id, who.user_id}; }

Signer::Signer(HubClient* hub, const KeyCustody* keys, Clock* clock)
    : hub_(hub), keys_(keys), clock_(clock) {
  CARELOOP_CHECK(hub_ != nullptr && keys_ != nullptr && clock_ != nullptr);
}

absl::StatusOr<std::string> Signer::KeyIdOf(const StaffMember& who,
                                            const trust::Ed25519PrivateKey& key) {
  v1::GetAgencyRequest get;
  get.set_agency_id(who.agency_id);
  ASSIGN_OR_RETURN(v1::AgencyRecord agency, hub_->GetAgency(get, ActingOf(who)));
  const std::string pub = key.public_key().raw();
  for (const v1::AgencyKey& k : agency.keys()) {
    if (k.public_key() == pub && k.revoked_unix_nanos() == 0) return k.key_id();
  }
  return absl::FailedPreconditionError(
      "the directory lists no active key of this agency matching the key the edge holds; an "
      "admin must register it (or rotate to it) first");
}

absl::StatusOr<std::string> Signer::Sign(const StaffMember& who,
                                         const google::protobuf::Message& payload,
                                         const std::string& role) {
  RETURN_IF_ERROR(RequireRole(who, role));
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key, keys_->Load(who.agency_id));
  ASSIGN_OR_RETURN(std::string key_id, KeyIdOf(who, key));
  v1::Actor actor;
  actor.set_user_id(who.user_id);
  actor.set_display_name(who.display_name);
  actor.set_role(role);
  v1::Envelope e = trust::NewEnvelope(payload, who.agency_id, std::move(actor), key_id,
                                      clock_->Now(), HexEncode(RandomBytes(16)));
  return trust::SignEnvelope(std::move(e), key);
}

}  // namespace careloop::edge
