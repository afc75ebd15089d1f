// Identity over real mTLS on loopback, with certificates from `careloop certs`:
// the envelope's sender must be the connection's identity; agencies, hub
// admins and the hub's own services are distinct; an agency/hub certificate
// is nobody; the ledger listens apart and admits the hub's certificate only;
// no client certificate fails the handshake; a revoked one (CRL) is refused.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

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
         dir_.Sub("pki/crl"), "--admin-public-key", dir_.Sub("admin.pub"), "--ledger-listen",
         "127.0.0.1:0"},
        &address, &ledger_);
    if (!child.ok()) return child.status();
    child_ = *std::move(child);
    port_ = address.substr(address.rfind(':') + 1);
    return absl::OkStatus();
  }
  const std::string& port() const { return port_; }
  const std::string& ledger() const { return ledger_; }
  void Stop() {
    child_->Signal(SIGTERM);
    ASSERT_EQ(*child_->Wait(absl::Seconds(60)), 0);
  }
  // The CLI over TLS with the certificate pki/<name>.crt ("" = none), e.g.
  // "agency-org.foodbank", "admin-hub-admin", "server" (the hub's own).
  CliResult With(const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> pre = {
        "--hub", "127.0.0.1:" + port_, "--tls-ca", dir_.Sub("pki/ca.crt"), "--timeout", "10"};
    if (!name.empty()) {
      pre.insert(pre.end(), {"--tls-cert", dir_.Sub("pki/" + name + ".crt"), "--tls-key",
                             dir_.Sub("pki/" + name + ".key")});
    }
    args.insert(args.begin(), pre.begin(), pre.end());
    return RunCli(args);
  }
  CliResult As(const std::string& agency, std::vector<std::string> args) {
    return With(agency.empty() ? "" : "agency-" + agency, std::move(args));
  }

 private:
  const TempDir& dir_;
  std::unique_ptr<ChildProcess> child_;
  std::string port_;
  std::string ledger_;
};

// A certificate for spiffe://careloop/agency/hub signed by the deployment CA,
// made with openssl because `careloop certs` refuses to issue one.
bool ForgeAgencyHubCertificate(const TempDir& dir) {
  std::ofstream(dir.Sub("ext.cnf"))
      << "subjectAltName=URI:spiffe://careloop/agency/hub\nextendedKeyUsage=clientAuth\n"
         "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";
  const std::string pki = dir.Sub("pki");
  const std::string cmd =
      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + pki +
      "/forged-hub.key -subj /CN=hub -out " + pki +
      "/forged-hub.csr 2>/dev/null && openssl x509 "
      "-req -in " +
      pki + "/forged-hub.csr -CA " + pki + "/ca.crt -CAkey " + pki +
      "/ca.key -set_serial 9001 -days 1 -extfile " + dir.Sub("ext.cnf") + " -out " + pki +
      "/forged-hub.crt 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

TEST(TlsIntegration, IdentityIsTheClientCertificate) {
  TempDir dir;
  auto ok = [](const CliResult& r) { return r.exit_code == 0 ? "" : r.output; };
  ASSERT_EQ(RunCli({"certs", "ca", "--dir", dir.Sub("pki")}).exit_code, 0);
  ASSERT_EQ(RunCli({"certs", "server", "--dir", dir.Sub("pki"), "--ip", "127.0.0.1"}).exit_code, 0);
  // careloop certs never issues the reserved agency id "hub".
  CliResult reserved = RunCli({"certs", "agency", "--dir", dir.Sub("pki"), "--id", "hub"});
  EXPECT_NE(reserved.exit_code, 0);
  EXPECT_NE(reserved.output.find("reserved"), std::string::npos) << reserved.output;
  std::string foodbank_serial;
  for (const char* a : {"org.foodbank", "org.shelter"}) {
    CliResult issued = RunCli({"certs", "agency", "--dir", dir.Sub("pki"), "--id", a});
    ASSERT_EQ(issued.exit_code, 0) << issued.output;
    if (std::string(a) == "org.foodbank")
      foodbank_serial = issued.output.substr(issued.output.rfind("serial ") + 7);
  }
  while (!foodbank_serial.empty() && foodbank_serial.back() == '\n') foodbank_serial.pop_back();
  ASSERT_EQ(RunCli({"certs", "admin", "--dir", dir.Sub("pki"), "--user", "hub-admin"}).exit_code,
            0);
  ASSERT_TRUE(ForgeAgencyHubCertificate(dir));
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
  // The hub admin connects with an admin certificate of its own; neither the
  // hub's service certificate nor a forged agency/hub one will do.
  CliResult by_service = hub.With("server", reg);
  EXPECT_EQ(by_service.exit_code, 3);
  EXPECT_NE(
      by_service.output.find("the connection is hub but the envelope is from admin:hub-admin"),
      std::string::npos)
      << by_service.output;
  CliResult forged = hub.With("forged-hub", reg);
  EXPECT_EQ(forged.exit_code, 3) << forged.output;
  EXPECT_NE(forged.output.find("the connection is none"), std::string::npos) << forged.output;
  CliResult registered = hub.With("admin-hub-admin", reg);
  ASSERT_EQ(registered.exit_code, 0) << ok(registered);
  // Shelter's certificate carrying an envelope signed as the hub: refused.
  reg[5] = "org.other";
  CliResult mismatch = hub.As("org.shelter", reg);
  EXPECT_EQ(mismatch.exit_code, 3);
  EXPECT_NE(mismatch.output.find("PERMISSION_DENIED: the connection is agency:org.shelter but the "
                                 "envelope is from admin:hub-admin"),
            std::string::npos)
      << mismatch.output;
  // The forged agency/hub certificate reads nothing either.
  CliResult forged_read = hub.With("forged-hub", {"agency", "show", "--id", "org.foodbank"});
  EXPECT_EQ(forged_read.exit_code, 3) << forged_read.output;
  EXPECT_NE(forged_read.output.find("UNAUTHENTICATED"), std::string::npos) << forged_read.output;
  // No client certificate: the handshake fails.
  CliResult anonymous = hub.As("", {"agency", "show", "--id", "org.foodbank"});
  EXPECT_EQ(anonymous.exit_code, 4) << anonymous.output;
  EXPECT_EQ(hub.As("org.foodbank", {"agency", "show", "--id", "org.foodbank"}).exit_code, 0);
  // LedgerService is internal: not on the agencies' listener for anyone, and
  // on its own listener only the hub's service certificate is admitted.
  CliResult on_agency_port =
      hub.With("server", {"ledger", "--ledger", "127.0.0.1:" + hub.port(), "head"});
  EXPECT_EQ(on_agency_port.exit_code, 3);
  EXPECT_NE(on_agency_port.output.find("UNIMPLEMENTED"), std::string::npos)
      << on_agency_port.output;
  for (const char* name : {"agency-org.foodbank", "admin-hub-admin", "forged-hub"}) {
    for (const char* cmd : {"head", "tail"}) {
      CliResult refused = hub.With(name, {"ledger", "--ledger", hub.ledger(), cmd});
      EXPECT_EQ(refused.exit_code, 3) << name << " " << cmd << ": " << refused.output;
      const std::string why =
          std::string(name) == "forged-hub"
              ? std::string("UNAUTHENTICATED")
              : "LedgerService." + std::string(cmd == std::string("head") ? "GetHead" : "Tail") +
                    " is for hub service";
      EXPECT_NE(refused.output.find(why), std::string::npos) << refused.output;
    }
  }
  CliResult hub_ledger = hub.With("server", {"ledger", "--ledger", hub.ledger(), "head"});
  EXPECT_EQ(hub_ledger.exit_code, 0) << hub_ledger.output;
  // ConsentService: under TLS the caller is the certificate, never the dev
  // header; compliance reads are refused to an agency, to the hub admin and
  // to the hub's service identity.
  CliResult spoofed = hub.As("org.shelter", {"--dev-agency", "org.privacy", "consent", "reviews"});
  EXPECT_EQ(spoofed.exit_code, 3);
  EXPECT_NE(spoofed.output.find("PERMISSION_DENIED: ConsentService.ListBreakGlass is for "
                                "compliance; the caller is agency:org.shelter"),
            std::string::npos)
      << spoofed.output;
  for (const char* name : {"admin-hub-admin", "server"}) {
    CliResult reviews = hub.With(name, {"consent", "reviews"});
    EXPECT_EQ(reviews.exit_code, 3) << name << ": " << reviews.output;
    CliResult query = hub.With(name, {"audit", "query", "--agency", "org.foodbank"});
    EXPECT_EQ(query.exit_code, 3) << name << ": " << query.output;
  }
  // Delivery and audit: the certificate says whose consumers and which
  // compliance rights, whatever header a client sends.
  CliResult deliveries =
      hub.As("org.shelter", {"--dev-agency", "org.foodbank", "deliveries", "status"});
  EXPECT_EQ(deliveries.exit_code, 3) << deliveries.output << " (org.shelter is not registered)";
  CliResult own = hub.As("org.foodbank", {"--dev-agency", "org.other", "deliveries", "status"});
  EXPECT_EQ(own.exit_code, 0) << own.output;
  EXPECT_NE(own.output.find("agency org.foodbank"), std::string::npos) << own.output;
  CliResult audit = hub.As("org.foodbank", {"--dev-agency", "org.privacy", "audit", "query",
                                            "--agency", "org.foodbank"});
  EXPECT_EQ(audit.exit_code, 3) << audit.output;
  EXPECT_NE(audit.output.find("is for compliance; the caller is agency:org.foodbank"),
            std::string::npos)
      << audit.output;
  EXPECT_EQ(hub.As("org.foodbank", {"audit", "monitor", "--state", dir.Sub("m.state"), "--vkey",
                                    dir.Sub("hub/keys/hub-log.vkey")})
                .exit_code,
            0)
      << "any agency may monitor";
  // Revoke org.foodbank's certificate.
  ASSERT_EQ(
      RunCli({"certs", "revoke", "--dir", dir.Sub("pki"), "--serial", foodbank_serial}).exit_code,
      0);
  hub.Stop();  // the CRL directory is read when careloopd starts
  ASSERT_TRUE(hub.Start().ok());
  CliResult revoked = hub.As("org.foodbank", {"agency", "show", "--id", "org.foodbank"});
  EXPECT_EQ(revoked.exit_code, 4) << revoked.output;
  EXPECT_EQ(hub.With("admin-hub-admin", {"agency", "show", "--id", "org.foodbank"}).exit_code, 0);
}

}  // namespace
}  // namespace careloop::testing
