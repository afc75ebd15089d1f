#include "services/edge/staff_admin.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "careloop/v1/directory.pb.h"
#include "services/names/names.h"

namespace careloop::edge {
namespace {

using names::kAgencyAdminRole;

// Each role once; at least one.
absl::Status CheckRoles(const std::vector<std::string>& roles) {
  if (roles.empty()) return absl::InvalidArgumentError("give the staff member at least one role");
  if (std::set<std::string>(roles.begin(), roles.end()).size() != roles.size()) {
    return absl::InvalidArgumentError("a role is named twice");
  }
  return absl::OkStatus();
}

StaffMember MemberOf(const StaffMember& admin, const StaffInput& in) {
  return StaffMember{admin.agency_id, in.user_id, in.display_name, in.roles, false, false};
}

}  // namespace

StaffAdmin::StaffAdmin(HubClient* hub, Signer* signer, StaffAccounts* accounts)
    : hub_(hub), signer_(signer), accounts_(accounts) {
  CARELOOP_CHECK(hub_ != nullptr && signer_ != nullptr && accounts_ != nullptr);
}

absl::Status StaffAdmin::MayAdminister(const StaffMember& admin, const std::string& user) {
  RETURN_IF_ERROR(RequireRole(admin, kAgencyAdminRole));
  if (user.empty()) return absl::InvalidArgumentError("name the staff member's user id");
  if (user == admin.user_id) {
    return absl::PermissionDeniedError(
        "you cannot change your own account here; another admin of your agency can");
  }
  return absl::OkStatus();
}

absl::Status StaffAdmin::SetActor(const StaffMember& admin, const StaffMember& member,
                                  bool inactive) {
  v1::SetActor change;
  change.set_agency_id(admin.agency_id);
  v1::ActorEntry* actor = change.mutable_actor();
  actor->set_user_id(member.user_id);
  actor->set_display_name(member.display_name);
  for (const std::string& r : member.roles) actor->add_roles(r);
  actor->set_inactive(inactive);
  ASSIGN_OR_RETURN(std::string envelope, signer_->Sign(admin, change, kAgencyAdminRole));
  return hub_->SubmitDirectoryChange(envelope).status();
}

absl::StatusOr<std::vector<StaffMember>> StaffAdmin::List(const StaffMember& admin) {
  RETURN_IF_ERROR(RequireRole(admin, kAgencyAdminRole));
  return accounts_->List(admin.agency_id);
}

absl::StatusOr<Enrollment> StaffAdmin::Add(const StaffMember& admin, const StaffInput& in) {
  RETURN_IF_ERROR(MayAdminister(admin, in.user_id));
  RETURN_IF_ERROR(CheckRoles(in.roles));
  const StaffMember member = MemberOf(admin, in);
  absl::StatusOr<StaffMember> existing = accounts_->Get(admin.agency_id, in.user_id);
  if (existing.ok()) {
    return absl::AlreadyExistsError("your agency already has a staff member with this user id");
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();
  RETURN_IF_ERROR(SetActor(admin, member, /*inactive=*/false));
  return accounts_->Add(member);
}

absl::StatusOr<Enrollment> StaffAdmin::Change(const StaffMember& admin, const StaffInput& in) {
  RETURN_IF_ERROR(MayAdminister(admin, in.user_id));
  RETURN_IF_ERROR(CheckRoles(in.roles));
  ASSIGN_OR_RETURN(const StaffMember current, accounts_->Get(admin.agency_id, in.user_id));
  const StaffMember member = MemberOf(admin, in);
  RETURN_IF_ERROR(SetActor(admin, member, current.disabled));
  return accounts_->Update(member);
}

absl::Status StaffAdmin::SetDisabled(const StaffMember& admin, const std::string& user,
                                     bool disabled) {
  RETURN_IF_ERROR(MayAdminister(admin, user));
  ASSIGN_OR_RETURN(const StaffMember member, accounts_->Get(admin.agency_id, user));
  if (disabled) {
    // Their sessions end now, whatever the hub says next.
    RETURN_IF_ERROR(accounts_->SetDisabled(admin.agency_id, user, true));
    return SetActor(admin, member, /*inactive=*/true);
  }
  RETURN_IF_ERROR(SetActor(admin, member, /*inactive=*/false));
  return accounts_->SetDisabled(admin.agency_id, user, false);
}

absl::StatusOr<Enrollment> StaffAdmin::ResetPassword(const StaffMember& admin,
                                                     const std::string& user) {
  RETURN_IF_ERROR(MayAdminister(admin, user));
  return accounts_->ResetPassword(admin.agency_id, user);
}

absl::Status StaffAdmin::Remove(const StaffMember& admin, const std::string& user) {
  RETURN_IF_ERROR(MayAdminister(admin, user));
  RETURN_IF_ERROR(accounts_->Get(admin.agency_id, user).status());
  RETURN_IF_ERROR(accounts_->SetDisabled(admin.agency_id, user, true));
  v1::RemoveActor change;
  change.set_agency_id(admin.agency_id);
  change.set_user_id(user);
  ASSIGN_OR_RETURN(std::string envelope, signer_->Sign(admin, change, kAgencyAdminRole));
  const absl::Status removed = hub_->SubmitDirectoryChange(envelope).status();
  // Already gone from the directory (removed there earlier): the account goes too.
  if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  return accounts_->Remove(admin.agency_id, user);
}

}  // namespace careloop::edge
