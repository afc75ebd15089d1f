// The edge's HTTP API over a real loopback server (cpp-httplib) and a real
// staff store: sessions and CSRF, security headers and cookies, bad bodies,
// rate limits, lockout, the admin's second factor, a disabled account's
// session ending at once, and no PHI in the edge's log lines. An injected
// clock; scrypt at its test cost.
#include "services/edge/edge_http.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "services/edge/totp.h"
#include "tests/support/test_env.h"

namespace careloop::edge {
namespace {

using careloop::testing::TempDir;
using nlohmann::json;

constexpr char kAgency[] = "org.foodbank";
constexpr char kPassword[] = "a long enough passphrase";

class EdgeHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::Init(log::Level::kInfo, log::Format::kLogfmt);
    StaffPolicy policy;
    policy.password_cost = kTestPasswordCost;
    auto accounts = StaffAccounts::Open(tmp_.Sub("staff"), std::string(32, 'K'), &clock_, policy);
    ASSERT_TRUE(accounts.ok()) << accounts.status();
    accounts_ = *std::move(accounts);
    ASSERT_TRUE(
        accounts_->Add({kAgency, "ana", "Ana Example-Intake", {"receiver"}}, kPassword).ok());
    auto admin = accounts_->Add({kAgency, "ines", "Ines Admin", {"admin"}}, kPassword);
    ASSERT_TRUE(admin.ok());
    admin_secret_ = admin->totp_secret;
    StartServer(EdgeHttpOptions{});
  }
  void StartServer(EdgeHttpOptions options) {
    http_.reset();
    http_ = std::make_unique<EdgeHttp>(options, accounts_.get(), &clock_);
    ASSERT_TRUE(http_->Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_->port());
  }
  httplib::Result Post(const std::string& path, const json& body,
                       const httplib::Headers& headers = {}) {
    return client_->Post(path, headers, body.dump(), "application/json");
  }
  httplib::Result LoginAs(const std::string& user, const std::string& password,
                          const std::string& code = "") {
    return Post("/api/login",
                json{{"agency", kAgency}, {"user", user}, {"password", password}, {"code", code}});
  }
  // The session cookie a login set, as a Cookie header.
  static httplib::Headers CookieOf(const httplib::Result& login) {
    const std::string set = login->get_header_value("Set-Cookie");
    return {{"Cookie", set.substr(0, set.find(';'))}};
  }
  static httplib::Headers WithCsrf(httplib::Headers h, const httplib::Result& login) {
    h.emplace("X-CSRF-Token", json::parse(login->body)["csrf"].get<std::string>());
    return h;
  }

  TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<StaffAccounts> accounts_;
  std::string admin_secret_;
  std::unique_ptr<EdgeHttp> http_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(EdgeHttpTest, WithoutASessionTheApiAnswers401) {
  auto res = client_->Get("/api/session");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = client_->Get("/api/session", {{"Cookie", "careloop_session=forged"}});
  EXPECT_EQ(res->status, 401);
  res = Post("/api/logout", json::object());
  EXPECT_EQ(res->status, 401);
}

TEST_F(EdgeHttpTest, ALoginSetsAnHttpOnlySameSiteCookieAndTheSessionNamesTheStaffMember) {
  auto login = LoginAs("ana", kPassword);
  ASSERT_TRUE(login);
  ASSERT_EQ(login->status, 200) << login->body;
  const std::string cookie = login->get_header_value("Set-Cookie");
  EXPECT_EQ(cookie.rfind("careloop_session=", 0), 0u) << cookie;
  EXPECT_NE(cookie.find("; HttpOnly"), std::string::npos);
  EXPECT_NE(cookie.find("; SameSite=Strict"), std::string::npos);
  EXPECT_NE(cookie.find("; Path=/"), std::string::npos);
  EXPECT_EQ(cookie.find("Secure"), std::string::npos);  // loopback HTTP in dev
  auto session = client_->Get("/api/session", CookieOf(login));
  ASSERT_EQ(session->status, 200);
  const json who = json::parse(session->body);
  EXPECT_EQ(who["staff"]["user_id"], "ana");
  EXPECT_EQ(who["staff"]["agency_id"], kAgency);
  EXPECT_EQ(who["csrf"], json::parse(login->body)["csrf"]);
}

TEST_F(EdgeHttpTest, AChangeWithoutItsCsrfTokenIs403AndChangesNothing) {
  auto login = LoginAs("ana", kPassword);
  ASSERT_EQ(login->status, 200);
  auto res = Post("/api/logout", json::object(), CookieOf(login));
  EXPECT_EQ(res->status, 403);
  httplib::Headers wrong = CookieOf(login);
  wrong.emplace("X-CSRF-Token", "not-the-token");
  EXPECT_EQ(Post("/api/logout", json::object(), wrong)->status, 403);
  EXPECT_EQ(Post("/api/password", json{{"old_password", kPassword}, {"new_password", "x"}},
                 CookieOf(login))
                ->status,
            403);
  // Still logged in: the refused logout did nothing.
  EXPECT_EQ(client_->Get("/api/session", CookieOf(login))->status, 200);
  res = Post("/api/logout", json::object(), WithCsrf(CookieOf(login), login));
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(client_->Get("/api/session", CookieOf(login))->status, 401);
}

TEST_F(EdgeHttpTest, EveryResponseCarriesTheSecurityHeaders) {
  auto login = LoginAs("ana", kPassword);
  const std::vector<httplib::Result> answers = [&] {
    std::vector<httplib::Result> out;
    out.push_back(client_->Get("/api/session"));                   // 401
    out.push_back(client_->Get("/api/session", CookieOf(login)));  // 200
    out.push_back(client_->Get("/no/such/page"));                  // 404
    out.push_back(Post("/api/login", json::array()));              // 400
    return out;
  }();
  for (const auto& res : answers) {
    ASSERT_TRUE(res);
    const std::string csp = res->get_header_value("Content-Security-Policy");
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << res->status;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos);
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos);
    EXPECT_EQ(res->get_header_value("X-Frame-Options"), "DENY") << res->status;
    EXPECT_EQ(res->get_header_value("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(res->get_header_value("Referrer-Policy"), "no-referrer");
    EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  }
}

TEST_F(EdgeHttpTest, BadBodiesGetAClearErrorAndNoSession) {
  EXPECT_EQ(client_->Post("/api/login", "agency=org.foodbank", "application/x-www-form-urlencoded")
                ->status,
            400);
  EXPECT_EQ(client_->Post("/api/login", "{not json", "application/json")->status, 400);
  auto typed = Post("/api/login", json{{"agency", kAgency}, {"user", 7}, {"password", kPassword}});
  EXPECT_EQ(typed->status, 400);
  EXPECT_NE(typed->body.find("\\\"user\\\" must be a string"), std::string::npos) << typed->body;
  EXPECT_EQ(
      Post("/api/login",
           json{{"agency", kAgency}, {"user", "ana"}, {"password", std::string(2 << 20, 'x')}})
          ->status,
      413);
  for (const auto* res : {&typed}) EXPECT_TRUE((*res)->get_header_value("Set-Cookie").empty());
}

TEST_F(EdgeHttpTest, LoginsFromOneAddressAreRateLimited) {
  int limited = 0;
  for (int i = 0; i < 12; ++i) {
    auto res = LoginAs("nobody", kPassword);
    if (res->status == 429) ++limited;
  }
  EXPECT_EQ(limited, 2);
  EXPECT_EQ(LoginAs("ana", kPassword)->status, 429);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(LoginAs("ana", kPassword)->status, 200);
}

TEST_F(EdgeHttpTest, RepeatedWrongPasswordsLockTheAccount) {
  for (int i = 0; i < 5; ++i) EXPECT_EQ(LoginAs("ana", "not the passphrase")->status, 401);
  auto locked = LoginAs("ana", kPassword);
  EXPECT_EQ(locked->status, 429);
  EXPECT_NE(locked->body.find("locked"), std::string::npos);
  clock_.Advance(absl::Minutes(15));
  EXPECT_EQ(LoginAs("ana", kPassword)->status, 200);
}

TEST_F(EdgeHttpTest, AnAdminMustGiveTheOneTimeCode) {
  EXPECT_EQ(LoginAs("ines", kPassword)->status, 401);
  EXPECT_EQ(LoginAs("ines", kPassword, "123456")->status, 401);
  auto res = LoginAs("ines", kPassword, Hotp(admin_secret_, TotpStep(clock_.Now()), 6));
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["staff"]["has_second_factor"], true);
}

TEST_F(EdgeHttpTest, ADisabledAccountsSessionEndsAtOnce) {
  auto login = LoginAs("ana", kPassword);
  ASSERT_EQ(login->status, 200);
  ASSERT_EQ(client_->Get("/api/session", CookieOf(login))->status, 200);
  ASSERT_TRUE(accounts_->SetDisabled(kAgency, "ana", true).ok());
  EXPECT_EQ(client_->Get("/api/session", CookieOf(login))->status, 401);
  EXPECT_EQ(LoginAs("ana", kPassword)->status, 401);
}

TEST_F(EdgeHttpTest, ChangingThePasswordIssuesANewSession) {
  auto login = LoginAs("ana", kPassword);
  auto res = Post("/api/password",
                  json{{"old_password", kPassword}, {"new_password", "another long passphrase"}},
                  WithCsrf(CookieOf(login), login));
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(client_->Get("/api/session", CookieOf(login))->status, 401);
  EXPECT_EQ(client_->Get("/api/session", CookieOf(res))->status, 200);
  EXPECT_EQ(LoginAs("ana", "another long passphrase")->status, 200);
}

// Captures what the process writes to stderr (where the log goes).
class StderrCapture {
 public:
  explicit StderrCapture(const std::string& path) : path_(path) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  std::string Stop() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    return *ReadFile(path_);
  }

 private:
  std::string path_;
  int saved_;
};

TEST_F(EdgeHttpTest, TheEdgesLogLinesHoldNoPhiNoSecretsAndNoClientPaths) {
  StderrCapture capture(tmp_.Sub("stderr"));
  auto login = LoginAs("ana", kPassword);
  ASSERT_EQ(login->status, 200);
  const std::string token = CookieOf(login).begin()->second;
  client_->Get("/api/patient/MRN-40213377?name=Rosa%20Example", CookieOf(login));
  LoginAs("ana", "a wrong passphrase here");
  const std::string logged = capture.Stop();
  EXPECT_NE(logged.find("route=/api/login "), std::string::npos) << logged;
  EXPECT_NE(logged.find("staff=org.foodbank/ana"), std::string::npos) << logged;
  for (const std::string& secret :
       {std::string("MRN-40213377"), std::string("Rosa"), std::string("Ana Example"),
        std::string(kPassword), std::string("a wrong passphrase"), token.substr(17)}) {
    EXPECT_EQ(logged.find(secret), std::string::npos) << secret << "\n" << logged;
  }
}

}  // namespace
}  // namespace careloop::edge
