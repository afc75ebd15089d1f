#include "services/edge/staff_accounts.h"

#include <rocksdb/utilities/checkpoint.h>

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/edge/totp.h"
#include "storage/rocksdb_status.h"
#include "storage/validate.h"

namespace careloop::edge {
namespace {

using storage::FromRocks;

constexpr absl::string_view kAccountPrefix = "a/";
constexpr absl::string_view kSessionPrefix = "s/";
constexpr size_t kTokenBytes = 32;
constexpr char kAdminRole[] = "admin";
// A session's last use is written at most this often (every request would
// be a write).
constexpr absl::Duration kTouchEvery = absl::Minutes(1);

const absl::Status& WrongCredentials() {
  static const absl::Status* s =
      new absl::Status(absl::UnauthenticatedError("the user, password or one-time code is wrong"));
  return *s;
}
const absl::Status& SessionEnded() {
  static const absl::Status* s =
      new absl::Status(absl::UnauthenticatedError("the session has ended; log in again"));
  return *s;
}

std::string AccountKey(absl::string_view agency, absl::string_view user) {
  return absl::StrCat(kAccountPrefix, agency, "/", user);
}
std::string SessionKey(absl::string_view token) {
  return absl::StrCat(kSessionPrefix, HexEncode(AsStringView(Sha256(token))));
}
std::string NewToken() { return absl::WebSafeBase64Escape(RandomBytes(kTokenBytes)); }
std::string SealBinding(const store::Account& a) {
  return absl::StrCat("totp\n", a.agency_id(), "\n", a.user_id());
}

int64_t Nanos(absl::Time t) { return absl::ToUnixNanos(t); }

rocksdb::WriteOptions Durable() {
  rocksdb::WriteOptions w;
  w.sync = true;
  return w;
}

absl::Status ValidateMember(const StaffMember& m) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(m.agency_id));
  RETURN_IF_ERROR(storage::ValidateStreamSegment(m.user_id, "user id"));
  if (m.display_name.empty() || m.display_name.size() > 200) {
    return absl::InvalidArgumentError("a display name needs 1 to 200 bytes");
  }
  if (m.roles.empty()) return absl::InvalidArgumentError("a staff member needs a role");
  for (const std::string& r : m.roles) {
    RETURN_IF_ERROR(storage::ValidateToken(r, "role"));
  }
  return absl::OkStatus();
}

StaffMember MemberOf(const store::Account& a) {
  StaffMember m;
  m.agency_id = a.agency_id();
  m.user_id = a.user_id();
  m.display_name = a.display_name();
  m.roles.assign(a.roles().begin(), a.roles().end());
  m.disabled = a.disabled();
  m.has_second_factor = !a.sealed_totp_secret().empty();
  return m;
}

// A one-time password a person can type: 20 base32 characters (100 bits).
std::string OneTimePassword() { return Base32Encode(RandomBytes(13)).substr(0, 20); }

}  // namespace

bool NeedsSecondFactor(const std::vector<std::string>& roles) {
  return std::find(roles.begin(), roles.end(), kAdminRole) != roles.end();
}

StaffAccounts::StaffAccounts(std::unique_ptr<rocksdb::DB> db, absl::string_view kek, Clock* clock,
                             StaffPolicy policy)
    : db_(std::move(db)),
      sealer_(kek, "staff totp"),
      clock_(clock),
      policy_(policy),
      decoy_hash_(HashPassword("careloop decoy password", policy.password_cost)) {}

StaffAccounts::~StaffAccounts() {
  if (db_) db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<StaffAccounts>> StaffAccounts::Open(const std::string& dir,
                                                                   absl::string_view kek,
                                                                   Clock* clock,
                                                                   StaffPolicy policy) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.paranoid_checks = true;
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(opts, dir, &raw), "opening the staff store"));
  return std::unique_ptr<StaffAccounts>(
      new StaffAccounts(std::unique_ptr<rocksdb::DB>(raw), kek, clock, policy));
}

absl::StatusOr<store::Account> StaffAccounts::ReadAccount(absl::string_view agency,
                                                          absl::string_view user) {
  std::string value;
  const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), AccountKey(agency, user), &value);
  if (s.IsNotFound()) return absl::NotFoundError("no such staff account");
  RETURN_IF_ERROR(FromRocks(s, "reading a staff account"));
  store::Account a;
  if (!a.ParseFromString(value)) return absl::DataLossError("a staff account record is damaged");
  return a;
}

absl::Status StaffAccounts::WriteAccount(const store::Account& a) {
  return FromRocks(
      db_->Put(Durable(), AccountKey(a.agency_id(), a.user_id()), a.SerializeAsString()),
      "writing a staff account");
}

absl::StatusOr<store::Session> StaffAccounts::ReadSession(absl::string_view token) {
  std::string value;
  const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), SessionKey(token), &value);
  if (s.IsNotFound()) return SessionEnded();
  RETURN_IF_ERROR(FromRocks(s, "reading a session"));
  store::Session session;
  if (!session.ParseFromString(value)) return absl::DataLossError("a session record is damaged");
  return session;
}

Enrollment StaffAccounts::EnrollSecondFactorIfNeeded(store::Account* a) {
  Enrollment e;
  const std::vector<std::string> roles(a->roles().begin(), a->roles().end());
  if (!NeedsSecondFactor(roles) || !a->sealed_totp_secret().empty()) return e;
  e.totp_secret = RandomBytes(kTotpSecretBytes);
  e.totp_uri = TotpUri(e.totp_secret, absl::StrCat(a->user_id(), "@", a->agency_id()));
  a->set_sealed_totp_secret(sealer_.Seal(e.totp_secret, SealBinding(*a)));
  a->set_last_totp_step(0);
  return e;
}

absl::StatusOr<Enrollment> StaffAccounts::Add(const StaffMember& member,
                                              std::optional<std::string> password) {
  RETURN_IF_ERROR(ValidateMember(member));
  Enrollment e;
  if (!password) {
    e.one_time_password = OneTimePassword();
  } else {
    RETURN_IF_ERROR(CheckNewPassword(*password, member.user_id));
  }
  store::Account a;
  a.set_agency_id(member.agency_id);
  a.set_user_id(member.user_id);
  a.set_display_name(member.display_name);
  for (const std::string& r : member.roles) a.add_roles(r);
  a.set_password_hash(
      HashPassword(password ? *password : e.one_time_password, policy_.password_cost));
  a.set_must_change_password(!password);
  a.set_disabled(member.disabled);
  a.set_created_unix_nanos(Nanos(clock_->Now()));
  const Enrollment factor = EnrollSecondFactorIfNeeded(&a);
  e.totp_secret = factor.totp_secret;
  e.totp_uri = factor.totp_uri;
  absl::MutexLock lock(&mu_);
  if (ReadAccount(member.agency_id, member.user_id).ok()) {
    return absl::AlreadyExistsError("the agency already has a staff account with this user id");
  }
  RETURN_IF_ERROR(WriteAccount(a));
  return e;
}

absl::Status StaffAccounts::CheckSecondFactor(const store::Account& a, absl::string_view code,
                                              int64_t* step) {
  *step = a.last_totp_step();
  if (a.sealed_totp_secret().empty()) {
    const std::vector<std::string> roles(a.roles().begin(), a.roles().end());
    // An admin without an enrolled factor (a damaged record) cannot log in.
    return NeedsSecondFactor(roles) ? WrongCredentials() : absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const std::string secret, sealer_.Open(a.sealed_totp_secret(), SealBinding(a)));
  absl::StatusOr<int64_t> matched = VerifyTotp(secret, code, clock_->Now(), a.last_totp_step());
  if (!matched.ok()) return WrongCredentials();
  *step = *matched;
  return absl::OkStatus();
}

absl::Status StaffAccounts::RecordFailure(store::Account* a) {
  a->set_failed_logins(a->failed_logins() + 1);
  if (a->failed_logins() >= policy_.max_failed_logins) {
    a->set_locked_until_unix_nanos(Nanos(clock_->Now() + policy_.lockout));
    a->set_failed_logins(0);
  }
  return WriteAccount(*a);
}

absl::StatusOr<SessionTokens> StaffAccounts::Login(absl::string_view agency, absl::string_view user,
                                                   absl::string_view password,
                                                   absl::string_view totp_code) {
  std::string hash = decoy_hash_;
  bool known = false;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<store::Account> a = ReadAccount(agency, user);
    if (a.ok()) {
      if (a->locked_until_unix_nanos() > Nanos(clock_->Now())) {
        return absl::ResourceExhaustedError(
            "too many failed logins: the account is locked for a while; an admin of the agency "
            "can unlock it by resetting its password");
      }
      hash = a->password_hash();
      known = true;
    } else if (a.status().code() != absl::StatusCode::kNotFound) {
      return a.status();
    }
  }
  // The memory-hard hash runs outside the lock.
  ASSIGN_OR_RETURN(const bool match, VerifyPassword(password, hash));
  if (!known) return WrongCredentials();
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(store::Account a, ReadAccount(agency, user));
  int64_t step = 0;
  // A wrong code counts as a failure too, so codes cannot be tried freely.
  if (!match || a.password_hash() != hash || !CheckSecondFactor(a, totp_code, &step).ok()) {
    RETURN_IF_ERROR(RecordFailure(&a));
    return WrongCredentials();
  }
  if (a.disabled()) return WrongCredentials();
  a.set_failed_logins(0);
  a.set_last_totp_step(step);
  if (NeedsRehash(a.password_hash(), policy_.password_cost)) {
    a.set_password_hash(HashPassword(password, policy_.password_cost));
  }
  RETURN_IF_ERROR(WriteAccount(a));
  return NewSession(a);
}

absl::StatusOr<SessionTokens> StaffAccounts::NewSession(const store::Account& a) {
  SessionTokens t{NewToken(), NewToken()};
  store::Session s;
  s.set_agency_id(a.agency_id());
  s.set_user_id(a.user_id());
  s.set_generation(a.generation());
  s.set_csrf_token(t.csrf);
  s.set_created_unix_nanos(Nanos(clock_->Now()));
  s.set_last_seen_unix_nanos(s.created_unix_nanos());
  RETURN_IF_ERROR(FromRocks(db_->Put(Durable(), SessionKey(t.session), s.SerializeAsString()),
                            "writing a session"));
  return t;
}

bool StaffAccounts::Ended(const store::Session& s, const store::Account& a) {
  const absl::Time now = clock_->Now();
  return a.disabled() || s.generation() != a.generation() ||
         now - absl::FromUnixNanos(s.last_seen_unix_nanos()) >= policy_.idle_timeout ||
         now - absl::FromUnixNanos(s.created_unix_nanos()) >= policy_.session_lifetime;
}

absl::StatusOr<Principal> StaffAccounts::LiveSession(absl::string_view token, bool touch) {
  if (token.empty() || token.size() > 2 * kTokenBytes) return SessionEnded();
  ASSIGN_OR_RETURN(store::Session s, ReadSession(token));
  absl::StatusOr<store::Account> a = ReadAccount(s.agency_id(), s.user_id());
  if (!a.ok() && a.status().code() != absl::StatusCode::kNotFound) return a.status();
  if (!a.ok() || Ended(s, *a)) {
    RETURN_IF_ERROR(
        FromRocks(db_->Delete(rocksdb::WriteOptions(), SessionKey(token)), "ending a session"));
    return SessionEnded();
  }
  const absl::Time now = clock_->Now();
  if (touch && now - absl::FromUnixNanos(s.last_seen_unix_nanos()) >= kTouchEvery) {
    s.set_last_seen_unix_nanos(Nanos(now));
    RETURN_IF_ERROR(
        FromRocks(db_->Put(rocksdb::WriteOptions(), SessionKey(token), s.SerializeAsString()),
                  "touching a session"));
  }
  return Principal{MemberOf(*a), s.csrf_token(), a->must_change_password()};
}

absl::StatusOr<Principal> StaffAccounts::Authenticate(absl::string_view session_token) {
  absl::MutexLock lock(&mu_);
  return LiveSession(session_token, /*touch=*/true);
}

absl::Status StaffAccounts::Logout(absl::string_view session_token) {
  absl::MutexLock lock(&mu_);
  return FromRocks(db_->Delete(Durable(), SessionKey(session_token)), "ending a session");
}

absl::StatusOr<SessionTokens> StaffAccounts::ChangePassword(absl::string_view session_token,
                                                            absl::string_view old_password,
                                                            absl::string_view new_password) {
  std::string hash;
  StaffMember who;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(const Principal p, LiveSession(session_token, /*touch=*/false));
    who = p.member;
    ASSIGN_OR_RETURN(const store::Account a, ReadAccount(who.agency_id, who.user_id));
    hash = a.password_hash();
  }
  RETURN_IF_ERROR(CheckNewPassword(new_password, who.user_id));
  ASSIGN_OR_RETURN(const bool match, VerifyPassword(old_password, hash));
  if (!match) return absl::UnauthenticatedError("the current password is wrong");
  const std::string new_hash = HashPassword(new_password, policy_.password_cost);
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(store::Account a, ReadAccount(who.agency_id, who.user_id));
  if (a.password_hash() != hash) return SessionEnded();
  a.set_password_hash(new_hash);
  a.set_must_change_password(false);
  a.set_generation(a.generation() + 1);
  RETURN_IF_ERROR(WriteAccount(a));
  return NewSession(a);
}

absl::StatusOr<Enrollment> StaffAccounts::MutateAccount(
    absl::string_view agency, absl::string_view user,
    const std::function<absl::StatusOr<Enrollment>(store::Account*)>& change) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(store::Account a, ReadAccount(agency, user));
  ASSIGN_OR_RETURN(Enrollment e, change(&a));
  a.set_generation(a.generation() + 1);
  RETURN_IF_ERROR(WriteAccount(a));
  return e;
}

absl::StatusOr<Enrollment> StaffAccounts::ResetPassword(absl::string_view agency,
                                                        absl::string_view user) {
  Enrollment e;
  e.one_time_password = OneTimePassword();
  const std::string hash = HashPassword(e.one_time_password, policy_.password_cost);
  return MutateAccount(agency, user, [&](store::Account* a) -> absl::StatusOr<Enrollment> {
    a->set_password_hash(hash);
    a->set_must_change_password(true);
    a->set_failed_logins(0);
    a->set_locked_until_unix_nanos(0);
    return e;
  });
}

absl::Status StaffAccounts::SetDisabled(absl::string_view agency, absl::string_view user,
                                        bool disabled) {
  return MutateAccount(agency, user,
                       [&](store::Account* a) -> absl::StatusOr<Enrollment> {
                         a->set_disabled(disabled);
                         return Enrollment{};
                       })
      .status();
}

absl::StatusOr<Enrollment> StaffAccounts::Update(const StaffMember& member) {
  RETURN_IF_ERROR(ValidateMember(member));
  return MutateAccount(member.agency_id, member.user_id,
                       [&](store::Account* a) -> absl::StatusOr<Enrollment> {
                         a->set_display_name(member.display_name);
                         a->clear_roles();
                         for (const std::string& r : member.roles) a->add_roles(r);
                         return EnrollSecondFactorIfNeeded(a);
                       });
}

absl::Status StaffAccounts::Remove(absl::string_view agency, absl::string_view user) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(ReadAccount(agency, user).status());
  // Its sessions end because their account is gone (LiveSession).
  return FromRocks(db_->Delete(Durable(), AccountKey(agency, user)), "removing a staff account");
}

absl::StatusOr<StaffMember> StaffAccounts::Get(absl::string_view agency, absl::string_view user) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const store::Account a, ReadAccount(agency, user));
  return MemberOf(a);
}

absl::StatusOr<std::vector<StaffMember>> StaffAccounts::List(absl::string_view agency) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  const std::string prefix = absl::StrCat(kAccountPrefix, agency, "/");
  std::vector<StaffMember> out;
  absl::MutexLock lock(&mu_);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    store::Account a;
    if (!a.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("a staff account record is damaged");
    }
    out.push_back(MemberOf(a));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "listing staff accounts"));
  return out;
}

absl::StatusOr<size_t> StaffAccounts::PurgeEndedSessions() {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  rocksdb::WriteBatch batch;
  size_t ended = 0;
  for (it->Seek(std::string(kSessionPrefix));
       it->Valid() && it->key().starts_with(std::string(kSessionPrefix)); it->Next()) {
    store::Session s;
    const bool parsed = s.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
    absl::StatusOr<store::Account> a =
        parsed ? ReadAccount(s.agency_id(), s.user_id()) : absl::NotFoundError("");
    if (!a.ok() && a.status().code() != absl::StatusCode::kNotFound) return a.status();
    if (a.ok() && !Ended(s, *a)) continue;
    batch.Delete(it->key());
    ++ended;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "listing sessions"));
  RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "purging sessions"));
  return ended;
}

absl::Status StaffAccounts::Backup(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "backing up staff"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  return FromRocks(checkpoint->CreateCheckpoint(dir), "backing up the staff store");
}

}  // namespace careloop::edge
