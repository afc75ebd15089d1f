// Staff administration by an agency's own admin (DESIGN.md, "The agency
// edge"), without HTTP. Who a staff member is to the hub (user id, display
// name, roles, active or not) is a signed DirectoryService change made
// with the admin's authority (SetActor, RemoveActor, signed by the agency
// naming the admin in the admin role); their credentials stay in the
// edge's store (StaffAccounts) and are kept in step here.
//
// Order matters where safety does: disabling or removing someone ends
// their sessions in the edge first (at once, even if the hub is
// unreachable), then deactivates them in the directory; adding or
// re-enabling someone asks the hub first, so nobody can sign in as an
// actor the hub does not list.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/edge/hub_client.h"
#include "services/edge/signer.h"
#include "services/edge/staff_accounts.h"

namespace careloop::edge {

// A staff member as the admin enters them.
struct StaffInput {
  std::string user_id;
  std::string display_name;
  std::vector<std::string> roles;
};

class StaffAdmin {
 public:
  StaffAdmin(HubClient* hub, Signer* signer, StaffAccounts* accounts);

  // The agency's staff accounts (`admin` must hold the admin role).
  absl::StatusOr<std::vector<StaffMember>> List(const StaffMember& admin);
  // A new staff member: an actor in the directory and an account with a
  // one-time password (and a second factor for an admin), handed to the
  // admin once.
  absl::StatusOr<Enrollment> Add(const StaffMember& admin, const StaffInput& in);
  // New display name and roles (gaining admin enrolls a second factor).
  absl::StatusOr<Enrollment> Change(const StaffMember& admin, const StaffInput& in);
  // Disabling ends the member's sessions at once and deactivates the actor.
  absl::Status SetDisabled(const StaffMember& admin, const std::string& user, bool disabled);
  // A one-time password; the member chooses a new one at the next login.
  absl::StatusOr<Enrollment> ResetPassword(const StaffMember& admin, const std::string& user);
  // Removes the actor from the directory and the account from the edge.
  absl::Status Remove(const StaffMember& admin, const std::string& user);

 private:
  // PERMISSION_DENIED unless `admin` may administer `user` (an admin,
  // never their own account: another admin or the hub admin does that).
  static absl::Status MayAdminister(const StaffMember& admin, const std::string& user);
  // Signs and submits the agency's SetActor for `member`.
  absl::Status SetActor(const StaffMember& admin, const StaffMember& member, bool inactive);

  HubClient* hub_;
  Signer* signer_;
  StaffAccounts* accounts_;
};

}  // namespace careloop::edge
