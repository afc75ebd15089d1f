// Staff accounts of the agencies an edge serves (DESIGN.md, "The agency
// edge"): credentials, second factors, lockout and sessions, in the edge's
// own RocksDB store, never in the ledger. Each account is one directory
// actor (user id, display name, roles); changing who the actor is in the
// directory is the edge service's job (a signed DirectoryService change),
// this class keeps the account in step.
//
// Passwords are hashed with scrypt; accounts with the admin role must use a
// TOTP code; N failed logins in a row lock the account for a while; a
// session ends when idle, at its lifetime, at logout, and at once when its
// account is reset, disabled, removed or changes roles or password.
// Session tokens are stored only as their SHA-256.
#pragma once

#include <rocksdb/db.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "careloop/edge/staff_store.pb.h"
#include "services/edge/password.h"
#include "services/edge/sealed.h"

namespace careloop::edge {

struct StaffPolicy {
  PasswordCost password_cost;
  uint32_t max_failed_logins = 5;
  absl::Duration lockout = absl::Minutes(15);
  absl::Duration idle_timeout = absl::Minutes(30);
  absl::Duration session_lifetime = absl::Hours(12);
};

// One staff member as the directory knows them.
struct StaffMember {
  std::string agency_id;
  std::string user_id;
  std::string display_name;
  std::vector<std::string> roles;  // directory roles: sender, receiver, ...
  bool disabled = false;
  bool has_second_factor = false;
};

// What the person is handed once: a one-time password (when none was set;
// changed at the first login) and the second factor to enroll (when the
// account needs one and had none).
struct Enrollment {
  std::string one_time_password;
  std::string totp_secret;  // raw bytes; empty when none is new
  std::string totp_uri;
};

// The cookie values of a new session.
struct SessionTokens {
  std::string session;  // base64url, 32 random bytes
  std::string csrf;     // base64url, 32 random bytes
};

// Who a live session is.
struct Principal {
  StaffMember member;
  std::string csrf;
  bool must_change_password = false;
};

class StaffAccounts {
 public:
  // Opens (creating) the store in `dir`. `kek` seals TOTP secrets.
  static absl::StatusOr<std::unique_ptr<StaffAccounts>> Open(const std::string& dir,
                                                             absl::string_view kek, Clock* clock,
                                                             StaffPolicy policy = {});
  ~StaffAccounts();
  StaffAccounts(const StaffAccounts&) = delete;
  StaffAccounts& operator=(const StaffAccounts&) = delete;

  // A new account (ALREADY_EXISTS if the agency has this user). Without a
  // password, a one-time one is made. Admins get a second factor.
  absl::StatusOr<Enrollment> Add(const StaffMember& member,
                                 std::optional<std::string> password = std::nullopt);

  // UNAUTHENTICATED with one message for a wrong user, password or code
  // (and a disabled account); RESOURCE_EXHAUSTED while locked.
  absl::StatusOr<SessionTokens> Login(absl::string_view agency, absl::string_view user,
                                      absl::string_view password, absl::string_view totp_code);

  // The live session's principal (UNAUTHENTICATED once it has ended).
  absl::StatusOr<Principal> Authenticate(absl::string_view session_token);
  absl::Status Logout(absl::string_view session_token);

  // Ends every session of the account and opens a new one for the caller.
  absl::StatusOr<SessionTokens> ChangePassword(absl::string_view session_token,
                                               absl::string_view old_password,
                                               absl::string_view new_password);

  // Admin actions (who may take them is the edge service's policy). Each
  // ends the account's sessions at once.
  absl::StatusOr<Enrollment> ResetPassword(absl::string_view agency, absl::string_view user);
  absl::Status SetDisabled(absl::string_view agency, absl::string_view user, bool disabled);
  // New display name and roles; gaining admin enrolls a second factor.
  absl::StatusOr<Enrollment> Update(const StaffMember& member);
  absl::Status Remove(absl::string_view agency, absl::string_view user);

  absl::StatusOr<StaffMember> Get(absl::string_view agency, absl::string_view user);
  absl::StatusOr<std::vector<StaffMember>> List(absl::string_view agency);

  // Deletes ended sessions; returns how many.
  absl::StatusOr<size_t> PurgeEndedSessions();

  // A consistent copy of the store in `dir` (which must not exist).
  absl::Status Backup(const std::string& dir);

 private:
  StaffAccounts(std::unique_ptr<rocksdb::DB> db, absl::string_view kek, Clock* clock,
                StaffPolicy policy);

  absl::StatusOr<store::Account> ReadAccount(absl::string_view agency, absl::string_view user)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteAccount(const store::Account& account) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<store::Session> ReadSession(absl::string_view token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<SessionTokens> NewSession(const store::Account& account)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RecordFailure(store::Account* account) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Principal> LiveSession(absl::string_view token, bool touch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Ended(const store::Session& s, const store::Account& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Enrollment EnrollSecondFactorIfNeeded(store::Account* account);
  absl::Status CheckSecondFactor(const store::Account& account, absl::string_view code,
                                 int64_t* step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Enrollment> MutateAccount(
      absl::string_view agency, absl::string_view user,
      const std::function<absl::StatusOr<Enrollment>(store::Account*)>& change);

  std::unique_ptr<rocksdb::DB> db_;
  Sealer sealer_;
  Clock* clock_;
  StaffPolicy policy_;
  // The dummy hash a login for an unknown user checks, so that it takes as
  // long as one for a known user.
  std::string decoy_hash_;
  absl::Mutex mu_;
};

// Whether the roles include one that needs a second factor (admin).
bool NeedsSecondFactor(const std::vector<std::string>& roles);

}  // namespace careloop::edge
