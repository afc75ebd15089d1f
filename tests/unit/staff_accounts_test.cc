// Staff accounts in the edge's own store: logins, the admin's second
// factor, lockout, sessions that end (idle, lifetime, logout, and at once on
// a reset, disable, removal, role or password change), and backups. An
// injected clock; scrypt at its test cost.
#include "services/edge/staff_accounts.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "absl/strings/escaping.h"
#include "base/sha256.h"
#include "services/edge/totp.h"
#include "tests/support/test_env.h"

namespace careloop::edge {
namespace {

using careloop::testing::TempDir;

const std::string kKek(32, 'K');
constexpr char kAgency[] = "org.foodbank";
constexpr char kPassword[] = "a long enough passphrase";

StaffMember Member(const std::string& user, std::vector<std::string> roles) {
  return StaffMember{kAgency, user, "Intake " + user, std::move(roles)};
}

class StaffAccountsTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    accounts_.reset();
    StaffPolicy policy;
    policy.password_cost = kTestPasswordCost;
    auto opened = StaffAccounts::Open(tmp_.Sub("staff"), kKek, &clock_, policy);
    ASSERT_TRUE(opened.ok()) << opened.status();
    accounts_ = *std::move(opened);
  }
  absl::StatusOr<SessionTokens> LoginAs(const std::string& user, const std::string& password,
                                        const std::string& code = "") {
    return accounts_->Login(kAgency, user, password, code);
  }
  std::string CodeNow(const std::string& secret) { return Hotp(secret, TotpStep(clock_.Now()), 6); }

  TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<StaffAccounts> accounts_;
};

TEST_F(StaffAccountsTest, AStaffMemberLogsInAndTheSessionNamesThem) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  auto session = LoginAs("ana", kPassword);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_NE(session->session, session->csrf);
  auto who = accounts_->Authenticate(session->session);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->member.agency_id, kAgency);
  EXPECT_EQ(who->member.user_id, "ana");
  EXPECT_EQ(who->member.roles, std::vector<std::string>{"receiver"});
  EXPECT_EQ(who->csrf, session->csrf);
  EXPECT_FALSE(who->must_change_password);
  ASSERT_TRUE(accounts_->Logout(session->session).ok());
  EXPECT_EQ(accounts_->Authenticate(session->session).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(StaffAccountsTest, AWrongPasswordAndAnUnknownUserGetTheSameAnswer) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  const absl::Status wrong = LoginAs("ana", "not the passphrase").status();
  const absl::Status unknown = LoginAs("nobody", kPassword).status();
  const absl::Status other_agency = accounts_->Login("org.other", "ana", kPassword, "").status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong, unknown);
  EXPECT_EQ(wrong, other_agency);
}

TEST_F(StaffAccountsTest, RepeatedFailuresLockTheAccountUntilTheLockoutPasses) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(LoginAs("ana", "not the passphrase").status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  // Locked: even the right password is refused, and the lock survives a
  // restart (it is in the store, not in memory).
  EXPECT_EQ(LoginAs("ana", kPassword).status().code(), absl::StatusCode::kResourceExhausted);
  Reopen();
  EXPECT_EQ(LoginAs("ana", kPassword).status().code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Minutes(15));
  EXPECT_TRUE(LoginAs("ana", kPassword).ok());
}

TEST_F(StaffAccountsTest, ASuccessResetsTheCountOfFailures) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(LoginAs("ana", "not the passphrase").ok());
    EXPECT_TRUE(LoginAs("ana", kPassword).ok()) << round;
  }
}

TEST_F(StaffAccountsTest, AnAdminNeedsTheOneTimeCodeAndACodeIsUsedOnce) {
  auto enrolled = accounts_->Add(Member("ines", {"admin", "receiver"}), kPassword);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  ASSERT_EQ(enrolled->totp_secret.size(), kTotpSecretBytes);
  EXPECT_NE(enrolled->totp_uri.find("secret=" + Base32Encode(enrolled->totp_secret)),
            std::string::npos);
  EXPECT_EQ(LoginAs("ines", kPassword).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(LoginAs("ines", kPassword, "000000").status(), LoginAs("nobody", kPassword).status());
  const std::string code = CodeNow(enrolled->totp_secret);
  auto session = LoginAs("ines", kPassword, code);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_TRUE(accounts_->Authenticate(session->session)->member.has_second_factor);
  // The same code again (a replay, or a shoulder-surfer) is refused.
  EXPECT_EQ(LoginAs("ines", kPassword, code).status().code(), absl::StatusCode::kUnauthenticated);
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(LoginAs("ines", kPassword, CodeNow(enrolled->totp_secret)).ok());
  // The seed is not in the store in the clear.
  accounts_.reset();
  rocksdb::DB* raw = nullptr;
  rocksdb::Options opts;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(opts, tmp_.Sub("staff"), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    EXPECT_EQ(it->value().ToString().find(enrolled->totp_secret), std::string::npos);
  }
}

TEST_F(StaffAccountsTest, WrongCodesCountTowardsTheLockout) {
  auto enrolled = accounts_->Add(Member("ines", {"admin"}), kPassword);
  ASSERT_TRUE(enrolled.ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(LoginAs("ines", kPassword, "000000").ok());
  EXPECT_EQ(LoginAs("ines", kPassword, CodeNow(enrolled->totp_secret)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(StaffAccountsTest, SessionsEndWhenIdleAndAtTheirLifetime) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  auto idle = LoginAs("ana", kPassword);
  ASSERT_TRUE(idle.ok());
  clock_.Advance(absl::Minutes(29));
  EXPECT_TRUE(accounts_->Authenticate(idle->session).ok());  // used: the idle clock restarts
  clock_.Advance(absl::Minutes(29));
  EXPECT_TRUE(accounts_->Authenticate(idle->session).ok());
  clock_.Advance(absl::Minutes(30));
  EXPECT_EQ(accounts_->Authenticate(idle->session).status().code(),
            absl::StatusCode::kUnauthenticated);

  auto busy = LoginAs("ana", kPassword);
  ASSERT_TRUE(busy.ok());
  for (int i = 0; i < 12 * 3; ++i) {
    clock_.Advance(absl::Minutes(20));
    const bool live = accounts_->Authenticate(busy->session).ok();
    EXPECT_EQ(live, (i + 1) * 20 < 12 * 60) << i;
  }
}

TEST_F(StaffAccountsTest, AResetDisableRemovalOrRoleChangeEndsSessionsAtOnce) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  auto session = LoginAs("ana", kPassword);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(accounts_->SetDisabled(kAgency, "ana", true).ok());
  EXPECT_FALSE(accounts_->Authenticate(session->session).ok());
  EXPECT_EQ(LoginAs("ana", kPassword).status(), LoginAs("nobody", kPassword).status());
  ASSERT_TRUE(accounts_->SetDisabled(kAgency, "ana", false).ok());
  // Re-enabling does not bring the old session back.
  EXPECT_FALSE(accounts_->Authenticate(session->session).ok());

  session = LoginAs("ana", kPassword);
  ASSERT_TRUE(session.ok());
  auto reset = accounts_->ResetPassword(kAgency, "ana");
  ASSERT_TRUE(reset.ok());
  EXPECT_FALSE(accounts_->Authenticate(session->session).ok());
  EXPECT_FALSE(LoginAs("ana", kPassword).ok());
  auto fresh = LoginAs("ana", reset->one_time_password);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(accounts_->Authenticate(fresh->session)->must_change_password);

  auto updated = accounts_->Update(Member("ana", {"receiver", "sender"}));
  ASSERT_TRUE(updated.ok());
  EXPECT_TRUE(updated->totp_secret.empty());
  EXPECT_FALSE(accounts_->Authenticate(fresh->session).ok());

  session = LoginAs("ana", reset->one_time_password);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(accounts_->Remove(kAgency, "ana").ok());
  EXPECT_FALSE(accounts_->Authenticate(session->session).ok());
  EXPECT_EQ(accounts_->Get(kAgency, "ana").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StaffAccountsTest, BecomingAnAdminEnrollsASecondFactor) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  auto updated = accounts_->Update(Member("ana", {"receiver", "admin"}));
  ASSERT_TRUE(updated.ok()) << updated.status();
  ASSERT_EQ(updated->totp_secret.size(), kTotpSecretBytes);
  EXPECT_FALSE(LoginAs("ana", kPassword).ok());
  EXPECT_TRUE(LoginAs("ana", kPassword, CodeNow(updated->totp_secret)).ok());
}

TEST_F(StaffAccountsTest, ChangingThePasswordEndsOtherSessions) {
  auto created = accounts_->Add(Member("ana", {"receiver"}));
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->one_time_password.size(), 20u);
  auto first = LoginAs("ana", created->one_time_password);
  auto second = LoginAs("ana", created->one_time_password);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(accounts_->Authenticate(first->session)->must_change_password);
  EXPECT_EQ(
      accounts_->ChangePassword(first->session, "wrong old password", kPassword).status().code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(accounts_->ChangePassword(first->session, created->one_time_password, "short")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  auto changed = accounts_->ChangePassword(first->session, created->one_time_password, kPassword);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_FALSE(accounts_->Authenticate(first->session).ok());
  EXPECT_FALSE(accounts_->Authenticate(second->session).ok());
  auto now = accounts_->Authenticate(changed->session);
  ASSERT_TRUE(now.ok());
  EXPECT_FALSE(now->must_change_password);
  EXPECT_FALSE(LoginAs("ana", created->one_time_password).ok());
  EXPECT_TRUE(LoginAs("ana", kPassword).ok());
}

TEST_F(StaffAccountsTest, BadInputIsRefusedAndLeavesNoAccount) {
  EXPECT_FALSE(accounts_->Add(StaffMember{"Not An Agency", "ana", "Ana", {"receiver"}}).ok());
  EXPECT_FALSE(accounts_->Add(StaffMember{kAgency, "ana/../x", "Ana", {"receiver"}}).ok());
  EXPECT_FALSE(accounts_->Add(StaffMember{kAgency, "ana", "", {"receiver"}}).ok());
  EXPECT_FALSE(accounts_->Add(StaffMember{kAgency, "ana", "Ana", {}}).ok());
  EXPECT_FALSE(accounts_->Add(Member("ana", {"receiver"}), "short").ok());
  EXPECT_TRUE(accounts_->List(kAgency)->empty());
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  EXPECT_EQ(accounts_->Add(Member("ana", {"sender"}), kPassword).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(accounts_->Get(kAgency, "ana")->roles, std::vector<std::string>{"receiver"});
  for (const std::string& token : {std::string(), std::string("x"), std::string(100, 'a')}) {
    EXPECT_EQ(accounts_->Authenticate(token).status().code(), absl::StatusCode::kUnauthenticated);
  }
}

TEST_F(StaffAccountsTest, TokensAreStoredOnlyAsTheirHashes) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  auto session = LoginAs("ana", kPassword);
  ASSERT_TRUE(session.ok());
  accounts_.reset();
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), tmp_.Sub("staff"), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  int sessions = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    EXPECT_EQ(it->key().ToString().find(session->session), std::string::npos);
    EXPECT_EQ(it->value().ToString().find(session->session), std::string::npos);
    EXPECT_EQ(it->value().ToString().find(kPassword), std::string::npos);
    sessions += it->key().starts_with("s/") ? 1 : 0;
  }
  EXPECT_EQ(sessions, 1);
}

TEST_F(StaffAccountsTest, EndedSessionsArePurgedAndABackupHoldsTheAccounts) {
  ASSERT_TRUE(accounts_->Add(Member("ana", {"receiver"}), kPassword).ok());
  ASSERT_TRUE(accounts_->Add(Member("bo", {"sender"}), kPassword).ok());
  ASSERT_TRUE(LoginAs("ana", kPassword).ok());
  auto kept = LoginAs("bo", kPassword);
  ASSERT_TRUE(kept.ok());
  clock_.Advance(absl::Minutes(20));
  ASSERT_TRUE(accounts_->Authenticate(kept->session).ok());
  clock_.Advance(absl::Minutes(20));
  EXPECT_EQ(*accounts_->PurgeEndedSessions(), 1u);
  ASSERT_TRUE(accounts_->Authenticate(kept->session).ok());

  ASSERT_TRUE(accounts_->Backup(tmp_.Sub("backup")).ok());
  EXPECT_FALSE(accounts_->Backup(tmp_.Sub("backup")).ok());  // never over an existing one
  StaffPolicy policy;
  policy.password_cost = kTestPasswordCost;
  auto restored = StaffAccounts::Open(tmp_.Sub("backup"), kKek, &clock_, policy);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto listed = (*restored)->List(kAgency);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].user_id, "ana");
  EXPECT_EQ((*listed)[1].user_id, "bo");
  EXPECT_TRUE((*restored)->Login(kAgency, "ana", kPassword, "").ok());
}

}  // namespace
}  // namespace careloop::edge
