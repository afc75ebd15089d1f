// An agency's own edge, run apart from the hub (careloopd --edge-hub) over
// real mTLS on loopback: the operator enrolls the agency offline (its key
// into the edge's custody, its first admin), the admin signs in with the
// one-time password and a TOTP code, chooses a password, and adds a staff
// member, which is a SetActor the edge signs with the agency's key and
// sends on a connection that presents the agency's certificate; the hub's
// directory then lists them. Nothing the edge sends could pass for another
// agency: its connection is the agency's certificate.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/edge/totp.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// What follows `label` on its line of `text`.
std::string After(const std::string& text, const std::string& label) {
  const size_t at = text.find(label);
  if (at == std::string::npos) return "";
  const size_t from = at + label.size();
  return text.substr(from, text.find('\n', from) - from);
}

class EdgeApartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("CARELOOP_EDGE_KEK", "0123456789abcdef0123456789abcdef-edge-apart-test", 1);
  }
  void TearDown() override { ::unsetenv("CARELOOP_EDGE_KEK"); }

  CliResult Cli(const std::string& cert, std::vector<std::string> args) {
    std::vector<std::string> pre = {"--hub",      hub_address_,
                                    "--tls-ca",   dir_.Sub("pki/ca.crt"),
                                    "--tls-cert", dir_.Sub("pki/" + cert + ".crt"),
                                    "--tls-key",  dir_.Sub("pki/" + cert + ".key"),
                                    "--timeout",  "10"};
    args.insert(args.begin(), pre.begin(), pre.end());
    return RunCli(args);
  }

  TempDir dir_;
  std::string hub_address_;
};

TEST_F(EdgeApartTest, AnAgencysOwnEdgeActsForItOverMutualTls) {
  const std::string pki = dir_.Sub("pki");
  ASSERT_EQ(RunCli({"certs", "ca", "--dir", pki}).exit_code, 0);
  ASSERT_EQ(RunCli({"certs", "server", "--dir", pki, "--ip", "127.0.0.1"}).exit_code, 0);
  ASSERT_EQ(RunCli({"certs", "agency", "--dir", pki, "--id", "org.foodbank"}).exit_code, 0);
  ASSERT_EQ(RunCli({"certs", "admin", "--dir", pki, "--user", "hub-admin"}).exit_code, 0);
  fs::create_directories(dir_.Sub("hub/keys"));
  for (const char* k : {"hub/keys/hub-log.pem", "hub/keys/webhook.pem"}) {
    ASSERT_EQ(RunCli({"keys", "generate", "--out", dir_.Sub(k)}).exit_code, 0);
  }
  for (const char* k : {"admin", "fb"}) {
    ASSERT_EQ(RunCli({"keys", "generate", "--out", dir_.Sub(absl::StrCat(k, ".pem")),
                      "--public-out", dir_.Sub(absl::StrCat(k, ".pub"))})
                  .exit_code,
              0);
  }
  auto hub =
      StartCareloopd({"--data-dir", dir_.Sub("hub"), "--tls-cert", pki + "/server.crt", "--tls-key",
                      pki + "/server.key", "--tls-client-ca", pki + "/ca.crt", "--admin-public-key",
                      dir_.Sub("admin.pub"), "--ledger-listen", "127.0.0.1:0"},
                     &hub_address_);
  ASSERT_TRUE(hub.ok()) << hub.status();
  hub_address_ = "127.0.0.1:" + hub_address_.substr(hub_address_.rfind(':') + 1);
  CliResult registered =
      Cli("admin-hub-admin",
          {"agency", "register", "--sign-key", dir_.Sub("admin.pem"), "--id", "org.foodbank",
           "--name", "Valley Food Bank", "--kind", "community-agency", "--service",
           "food-insecurity", "--agency-role", "receiver", "--agency-public-key",
           dir_.Sub("fb.pub"), "--admin-user", "u-admin"});
  ASSERT_EQ(registered.exit_code, 0) << registered.output;

  // The agency's operator: its certificate for the edge, its key and first
  // admin enrolled offline.
  const std::string certs = dir_.Sub("edge-certs");
  fs::create_directories(certs);
  for (const char* f : {"ca.crt", "agency-org.foodbank.crt", "agency-org.foodbank.key"}) {
    fs::copy_file(pki + "/" + f, certs + "/" + f);
  }
  CliResult enrolled =
      RunCli({"edge", "enroll", "--data-dir", dir_.Sub("edge"), "--agency", "org.foodbank", "--key",
              dir_.Sub("fb.pem"), "--admin-user", "u-admin", "--admin-name", "Jo Admin"});
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  const std::string one_time = After(enrolled.output, "one-time password: ");
  const std::string secret = After(enrolled.output, "second factor (authenticator app): ");
  ASSERT_FALSE(one_time.empty() || secret.empty()) << enrolled.output;

  std::string edge_address;
  auto edge = StartCareloopd({"--data-dir", dir_.Sub("edge"), "--edge-hub", hub_address_,
                              "--edge-hub-certs", certs, "--edge-listen", "127.0.0.1:0"},
                             &edge_address);
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_NE((*edge)->output().find("agencies served: 1"), std::string::npos) << (*edge)->output();

  httplib::Client web("http://" + edge_address);
  const absl::StatusOr<std::string> raw = edge::Base32Decode(secret);
  ASSERT_TRUE(raw.ok());
  const std::string code = edge::Hotp(*raw, static_cast<uint64_t>(edge::TotpStep(absl::Now())), 6);
  json login{
      {"agency", "org.foodbank"}, {"user", "u-admin"}, {"password", one_time}, {"code", code}};
  httplib::Result in = web.Post("/api/login", login.dump(), "application/json");
  ASSERT_TRUE(in);
  ASSERT_EQ(in->status, 200) << in->body;
  auto session = [](const httplib::Result& r) {
    const std::string c = r->get_header_value("Set-Cookie");
    return std::make_pair(c.substr(0, c.find(';')),
                          json::parse(r->body)["csrf"].get<std::string>());
  };
  auto [cookie, csrf] = session(in);
  json password{{"old_password", one_time}, {"new_password", "jo-admin-chose-this"}};
  httplib::Result changed =
      web.Post("/api/password", httplib::Headers{{"Cookie", cookie}, {"X-CSRF-Token", csrf}},
               password.dump(), "application/json");
  ASSERT_TRUE(changed);
  ASSERT_EQ(changed->status, 200) << changed->body;
  std::tie(cookie, csrf) = session(changed);
  json staff{{"user", "u-intake"}, {"name", "Sam Intake"}, {"roles", json::array({"receiver"})}};
  httplib::Result added =
      web.Post("/api/staff", httplib::Headers{{"Cookie", cookie}, {"X-CSRF-Token", csrf}},
               staff.dump(), "application/json");
  ASSERT_TRUE(added);
  ASSERT_EQ(added->status, 200) << added->body;

  // The hub's directory lists them: the change crossed mTLS as the agency.
  CliResult shown =
      Cli("agency-org.foodbank", {"--json", "agency", "show", "--id", "org.foodbank"});
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_NE(shown.output.find("u-intake"), std::string::npos) << shown.output;
  // The edge read its own agency over the same connection.
  httplib::Result agency = web.Get("/api/agency", httplib::Headers{{"Cookie", cookie}});
  ASSERT_TRUE(agency);
  EXPECT_EQ(agency->status, 200) << agency->body;
  EXPECT_EQ(json::parse(agency->body)["agency_id"], "org.foodbank");

  const std::string intake_password = json::parse(added->body)["one_time_password"];
  (*edge)->Signal(SIGTERM);
  EXPECT_EQ(*(*edge)->Wait(absl::Seconds(60)), 0);

  // Negative control: the same edge holding another agency's certificate
  // under the food bank's name. The hub sees that other agency, not the
  // food bank, and answers none of the food bank's reads.
  ASSERT_EQ(RunCli({"certs", "agency", "--dir", pki, "--id", "org.shelter"}).exit_code, 0);
  for (const char* ext : {".crt", ".key"}) {
    fs::copy_file(pki + "/agency-org.shelter" + ext, certs + "/agency-org.foodbank" + ext,
                  fs::copy_options::overwrite_existing);
  }
  auto wrong = StartCareloopd({"--data-dir", dir_.Sub("edge"), "--edge-hub", hub_address_,
                               "--edge-hub-certs", certs, "--edge-listen", "127.0.0.1:0"},
                              &edge_address);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  httplib::Client web2("http://" + edge_address);
  json intake{{"agency", "org.foodbank"},
              {"user", "u-intake"},
              {"password", intake_password},
              {"code", ""}};
  httplib::Result in2 = web2.Post("/api/login", intake.dump(), "application/json");
  ASSERT_TRUE(in2);
  ASSERT_EQ(in2->status, 200) << in2->body;  // the edge's own accounts need no hub
  std::tie(cookie, csrf) = session(in2);
  json intake_password_change{{"old_password", intake_password},
                              {"new_password", "sam-intake-password"}};
  httplib::Result changed2 =
      web2.Post("/api/password", httplib::Headers{{"Cookie", cookie}, {"X-CSRF-Token", csrf}},
                intake_password_change.dump(), "application/json");
  ASSERT_TRUE(changed2);
  ASSERT_EQ(changed2->status, 200) << changed2->body;
  std::tie(cookie, csrf) = session(changed2);
  httplib::Result foreign = web2.Get("/api/agency", httplib::Headers{{"Cookie", cookie}});
  ASSERT_TRUE(foreign);
  EXPECT_NE(foreign->status, 200) << foreign->body;
  EXPECT_EQ(foreign->body.find("Valley Food Bank"), std::string::npos) << foreign->body;
  (*wrong)->Signal(SIGTERM);
  EXPECT_EQ(*(*wrong)->Wait(absl::Seconds(60)), 0);

  // Enrolling again while the agency holds another key is refused.
  ASSERT_EQ(RunCli({"keys", "generate", "--out", dir_.Sub("other.pem")}).exit_code, 0);
  CliResult other =
      RunCli({"edge", "enroll", "--data-dir", dir_.Sub("edge"), "--agency", "org.foodbank", "--key",
              dir_.Sub("other.pem"), "--admin-user", "u-admin-2", "--admin-name", "Other"});
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.output.find("another key"), std::string::npos) << other.output;
  (*hub)->Signal(SIGTERM);
  EXPECT_EQ(*(*hub)->Wait(absl::Seconds(60)), 0);
}

// An edge run apart refuses a hub it would reach without TLS off loopback,
// and a missing console address.
TEST(EdgeApartConfig, WithoutCertificatesOnlyALoopbackHub) {
  TempDir dir;
  auto far = ChildProcess::Start({CARELOOPD_BINARY, "--data-dir", dir.Sub("e"), "--edge-hub",
                                  "192.0.2.1:7443", "--edge-listen", "127.0.0.1:0"});
  ASSERT_TRUE(far.ok());
  EXPECT_NE(*(*far)->Wait(absl::Seconds(60)), 0);
  EXPECT_NE((*far)->output().find("is not on loopback"), std::string::npos) << (*far)->output();
  auto off = ChildProcess::Start({CARELOOPD_BINARY, "--data-dir", dir.Sub("e"), "--edge-hub",
                                  "127.0.0.1:7443", "--edge-listen", "off"});
  ASSERT_TRUE(off.ok());
  EXPECT_NE(*(*off)->Wait(absl::Seconds(60)), 0);
  EXPECT_NE((*off)->output().find("needs --edge-listen"), std::string::npos) << (*off)->output();
}

}  // namespace
}  // namespace careloop::testing
