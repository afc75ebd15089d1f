// Signing as a staff member (DESIGN.md, "The agency edge"): an envelope of
// the member's agency, with the key the edge holds in custody, naming the
// member as its actor in one role the member holds. The edge adds no
// power: a member without the role is refused before anything is signed,
// and the hub checks the role against its directory again.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "google/protobuf/message.h"
#include "services/edge/hub_client.h"
#include "services/edge/key_custody.h"
#include "services/edge/staff_accounts.h"

namespace careloop::edge {

// Whether the member holds `role`.
bool Holds(const StaffMember& who, const std::string& role);

// PERMISSION_DENIED unless the member's account is enabled and holds `role`:
// the edge's one check before it acts for a staff member (the hub checks
// again what it is sent).
absl::Status RequireRole(const StaffMember& who, const std::string& role);

Acting ActingOf(const StaffMember& who);

class Signer {
 public:
  Signer(HubClient* hub, const KeyCustody* keys, Clock* clock);

  // The envelope bytes of `payload` signed by `who`'s agency naming `who`
  // as the actor in `role` (PERMISSION_DENIED when `who` lacks it or is
  // disabled).
  absl::StatusOr<std::string> Sign(const StaffMember& who, const google::protobuf::Message& payload,
                                   const std::string& role);

 private:
  // The directory's id of the agency's key the edge holds (active, not revoked).
  absl::StatusOr<std::string> KeyIdOf(const StaffMember& who, const trust::Ed25519PrivateKey& key);

  HubClient* hub_;
  const KeyCustody* keys_;
  Clock* clock_;
};

}  // namespace careloop::edge
