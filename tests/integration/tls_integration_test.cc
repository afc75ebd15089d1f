// Identity over real mTLS on loopback, with certificates from `careloop certs`:
// the envelope's sender must be the connection's agency; no client
// certificate fails the handshake; a revoked certificate (CRL) is refused.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

class TlsHub {
 public:
  explicit TlsHub(const TempDir& dir) : dir_(dir) {}
  absl::Status Start() {
    std::string address;
    auto child = StartCareloopd(
        {"--data-dir", dir_.Sub("hub"), "--tls-cert", dir_.Sub("pki/server.crt"), "--tls-key",
         dir_.Sub("pki/server.key"), "--tls-client-ca", dir_.Sub("pki/ca.crt"), "--tls-crl-dir",
         dir_.Sub("pki/crl"), "--admin-public-key", dir_.Sub("admin.pub")},
        &address);
    if (!child.ok()) return child.status();
    child_ = *std::move(child);
    port_ = address.substr(address.rfind(':') + 1);
    return absl::OkStatus();
  }
  const std::string& port() const { return port_; }
  void Stop() {
    child_->Signal(SIGTERM);
    ASSERT_EQ(*child_->Wait(absl::Seconds(60)), 0);
  }
  // The CLI over TLS as `agency` ("" = no client certificate).
  CliResult As(const std::string& agency, std::vector<std::string> args) {
    std::vector<std::string> pre = {
        "--hub", "127.0.0.1:" + port_, "--tls-ca", dir_.Sub("pki/ca.crt"), "--timeout", "10"};
    if (!agency.empty()) {
      pre.insert(pre.end(), {"--tls-cert", dir_.Sub("pki/agency-" + agency + ".crt"), "--tls-key",
                             dir_.Sub("pki/agency-" + agency + ".key")});
    }
    args.insert(args.begin(), pre.begin(), pre.end());
    return RunCli(args);
  }

 private:
  const TempDir& dir_;
  std::unique_ptr<ChildProcess> child_;
  std::string port_;
};

TEST(TlsIntegration, IdentityIsTheClientCertificate) {
  TempDir dir;
  auto ok = [](const CliResult& r) { return r.exit_code == 0 ? "" : r.output; };
  ASSERT_EQ(RunCli({"certs", "ca", "--dir", dir.Sub("pki")}).exit_code, 0);
  ASSERT_EQ(RunCli({"certs", "server", "--dir", dir.Sub("pki"), "--ip", "127.0.0.1"}).exit_code, 0);
  for (const char* a : {"hub", "org.foodbank", "org.shelter"}) {
    ASSERT_EQ(RunCli({"certs", "agency", "--dir", dir.Sub("pki"), "--id", a}).exit_code, 0);
  }
  std::filesystem::create_directories(dir.Sub("hub/keys"));
  ASSERT_EQ(RunCli({"keys", "generate", "--out", dir.Sub("hub/keys/hub-log.pem")}).exit_code, 0);
  // Production needs the webhook signing key to exist too (it is never the log key).
  ASSERT_EQ(RunCli({"keys", "generate", "--out", dir.Sub("hub/keys/webhook.pem")}).exit_code, 0);
  ASSERT_EQ(RunCli({"keys", "generate", "--out", dir.Sub("admin.pem"), "--public-out",
                    dir.Sub("admin.pub")})
                .exit_code,
            0);
  ASSERT_EQ(
      RunCli({"keys", "generate", "--out", dir.Sub("fb.pem"), "--public-out", dir.Sub("fb.pub")})
          .exit_code,
      0);
  TlsHub hub(dir);
  ASSERT_TRUE(hub.Start().ok());
  std::vector<std::string> reg = {"agency",
                                  "register",
                                  "--sign-key",
                                  dir.Sub("admin.pem"),
                                  "--id",
                                  "org.foodbank",
                                  "--name",
                                  "FB",
                                  "--kind",
                                  "community-agency",
                                  "--agency-public-key",
                                  dir.Sub("fb.pub"),
                                  "--admin-user",
                                  "u-admin"};
  // The hub admin's tooling connects as agency "hub".
  CliResult registered = hub.As("hub", reg);
  ASSERT_EQ(registered.exit_code, 0) << ok(registered);
  // Shelter's certificate carrying an envelope signed as the hub: refused.
  reg[5] = "org.other";
  CliResult mismatch = hub.As("org.shelter", reg);
  EXPECT_EQ(mismatch.exit_code, 3);
  EXPECT_NE(
      mismatch.output.find(
          "PERMISSION_DENIED: the connection is agency org.shelter but the envelope is from hub"),
      std::string::npos)
      << mismatch.output;
  // No client certificate: the handshake fails.
  CliResult anonymous = hub.As("", {"agency", "show", "--id", "org.foodbank"});
  EXPECT_EQ(anonymous.exit_code, 4) << anonymous.output;
  EXPECT_EQ(hub.As("org.foodbank", {"agency", "show", "--id", "org.foodbank"}).exit_code, 0);
  // LedgerService is internal: an agency's certificate is refused, the hub's own
  // identity (its server certificate, which services use as client) is not.
  CliResult agency_ledger = hub.As("org.foodbank", {"ledger", "head"});
  EXPECT_EQ(agency_ledger.exit_code, 3);
  EXPECT_NE(agency_ledger.output.find("LedgerService is internal"), std::string::npos)
      << agency_ledger.output;
  CliResult hub_ledger =
      RunCli({"--hub", "127.0.0.1:" + hub.port(), "--tls-ca", dir.Sub("pki/ca.crt"), "--tls-cert",
              dir.Sub("pki/server.crt"), "--tls-key", dir.Sub("pki/server.key"), "ledger", "head"});
  EXPECT_EQ(hub_ledger.exit_code, 0) << hub_ledger.output;
  // ConsentService: under TLS the caller is the certificate, never the dev
  // header; compliance reads are refused to an agency, open to the hub's own
  // services.
  CliResult spoofed = hub.As("org.shelter", {"--dev-agency", "hub", "consent", "reviews"});
  EXPECT_EQ(spoofed.exit_code, 3);
  EXPECT_NE(spoofed.output.find("PERMISSION_DENIED"), std::string::npos) << spoofed.output;
  EXPECT_NE(spoofed.output.find("agency org.shelter is neither"), std::string::npos)
      << spoofed.output;
  CliResult hub_reviews = RunCli({"--hub", "127.0.0.1:" + hub.port(), "--tls-ca",
                                  dir.Sub("pki/ca.crt"), "--tls-cert", dir.Sub("pki/server.crt"),
                                  "--tls-key", dir.Sub("pki/server.key"), "consent", "reviews"});
  EXPECT_EQ(hub_reviews.exit_code, 0) << hub_reviews.output;
  // Delivery and audit: the certificate says whose consumers and which
  // compliance rights, whatever header a client sends.
  CliResult deliveries =
      hub.As("org.shelter", {"--dev-agency", "org.foodbank", "deliveries", "status"});
  EXPECT_EQ(deliveries.exit_code, 0) << deliveries.output;
  EXPECT_NE(deliveries.output.find("agency org.shelter"), std::string::npos) << deliveries.output;
  CliResult audit =
      hub.As("org.shelter", {"--dev-agency", "hub", "audit", "query", "--agency", "org.foodbank"});
  EXPECT_EQ(audit.exit_code, 3) << audit.output;
  EXPECT_NE(audit.output.find("agency org.shelter is neither"), std::string::npos) << audit.output;
  EXPECT_EQ(hub.As("org.shelter", {"audit", "monitor", "--state", dir.Sub("m.state"), "--vkey",
                                   dir.Sub("hub/keys/hub-log.vkey")})
                .exit_code,
            0)
      << "any agency may monitor";
  // Revoke org.foodbank's certificate (serial 4: CA 1, server 2, hub 3).
  ASSERT_EQ(RunCli({"certs", "revoke", "--dir", dir.Sub("pki"), "--serial", "4"}).exit_code, 0);
  hub.Stop();  // the CRL directory is read when careloopd starts
  ASSERT_TRUE(hub.Start().ok());
  CliResult revoked = hub.As("org.foodbank", {"agency", "show", "--id", "org.foodbank"});
  EXPECT_EQ(revoked.exit_code, 4) << revoked.output;
  EXPECT_EQ(hub.As("org.shelter", {"agency", "show", "--id", "org.foodbank"}).exit_code, 0);
}

}  // namespace
}  // namespace careloop::testing
