// Consent as people use it: the careloop CLI against careloopd, in one
// process and split (ledger, directory and consent each in their own
// process). A hospital resolves a patient and records a consent, compliance
// checks decisions, an emergency department breaks the glass and compliance
// reviews it, the hospital revokes, and who may not read is refused.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using nlohmann::json;

struct Hubs {
  std::string directory;  // where agencies are registered
  std::string consent;    // where consents go
  std::string admin_key;
};

CliResult At(const std::string& hub, std::vector<std::string> args,
             const std::string& as_agency = "") {
  return CliAt(hub, std::move(args), as_agency);
}

std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& b) {
  return Concat(std::move(a), b);
}

class Scenario {
 public:
  Scenario(const Hubs& hubs, const TempDir& dir) : hubs_(hubs), dir_(dir) {}

  void Onboard(const std::string& id, const std::string& kind, const std::string& agency_role,
               const std::string& actor_role) {
    ASSERT_EQ(RunCli({"keys", "generate", "--out", dir_.Sub(id + ".pem")}).exit_code, 0);
    CliResult r = At(hubs_.directory,
                     {"agency", "register", "--sign-key", hubs_.admin_key, "--id", id, "--name",
                      "Agency " + id, "--kind", kind, "--agency-role", agency_role,
                      "--agency-public-key", dir_.Sub(id + ".pem"), "--admin-user", "u-admin"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = At(hubs_.directory, {"actor", "add", "--sign-key", hubs_.admin_key, "--agency", id,
                             "--user-id", "u-staff", "--actor-role", actor_role});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Sign as `id`'s staff member acting in `role`.
  std::vector<std::string> As(const std::string& id, const std::string& role,
                              const std::string& user = "u-staff") {
    return {
        "--sign-key", dir_.Sub(id + ".pem"), "--as", id, "--user", user, "--role", role, "--key-id",
        "k1"};
  }

  void Run() {
    Onboard("org.stmarys", "hospital", "sender", "sender");
    Onboard("org.foodbank", "community-agency", "receiver", "receiver");
    Onboard("org.er", "hospital", "emergency", "emergency");
    Onboard("org.compliance", "other", "compliance", "compliance");
    const std::string& hub = hubs_.consent;

    CliResult s = At(hub, {"subject", "resolve", "--id", "org.stmarys/mrn=000123"}, "org.stmarys");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    const std::string subject = s.output.substr(0, s.output.find('\n'));
    ASSERT_EQ(subject.rfind("s-", 0), 0u) << s.output;
    // Without an identity nobody may resolve.
    EXPECT_EQ(At(hub, {"subject", "resolve", "--id", "org.stmarys/mrn=1"}).exit_code, 3);

    std::ofstream(dir_.Sub("form.pdf")) << "the signed consent form";
    CliResult granted =
        At(hub, With({"--json", "consent", "grant", "--subject", subject, "--network", "--purpose",
                      "care-coordination", "--category", "contact", "--category", "social-needs",
                      "--evidence-file", dir_.Sub("form.pdf")},
                     As("org.stmarys", "sender")));
    ASSERT_EQ(granted.exit_code, 0) << granted.output;
    const std::string consent_id = json::parse(granted.output)["assigned_id"];

    // Compliance decides; the decision lists the versions it read.
    CliResult check =
        At(hub,
           {"consent", "check", "--subject", subject, "--recipient", "org.foodbank", "--purpose",
            "care-coordination", "--category", "social-needs", "--category", "behavioral-health"},
           "org.compliance");
    ASSERT_EQ(check.exit_code, 0) << check.output;
    EXPECT_NE(check.output.find("PERMIT social-needs"), std::string::npos) << check.output;
    EXPECT_NE(check.output.find("DENY   behavioral-health"), std::string::npos) << check.output;
    EXPECT_NE(check.output.find("consent/" + subject + "@1"), std::string::npos) << check.output;
    // An agency that neither recorded nor holds anything under it reads nothing.
    CliResult denied = At(hub, {"consent", "show", "--consent", consent_id}, "org.foodbank");
    EXPECT_EQ(denied.exit_code, 3);
    EXPECT_NE(denied.output.find("PERMISSION_DENIED"), std::string::npos) << denied.output;
    EXPECT_EQ(At(hub,
                 {"consent", "check", "--subject", subject, "--recipient", "org.foodbank",
                  "--purpose", "care-coordination", "--category", "contact"},
                 "org.foodbank")
                  .exit_code,
              3);
    CliResult shown = At(hub, {"consent", "show", "--consent", consent_id}, "org.stmarys");
    ASSERT_EQ(shown.exit_code, 0) << shown.output;
    EXPECT_NE(shown.output.find("CONSENT_ACTIVE"), std::string::npos) << shown.output;

    // The emergency department breaks the glass; compliance reviews it.
    CliResult bg =
        At(hub, With({"--json", "consent", "break-glass", "--subject", subject, "--category",
                      "behavioral-health", "--reason", "unresponsive on arrival"},
                     As("org.er", "emergency")));
    ASSERT_EQ(bg.exit_code, 0) << bg.output;
    const std::string bg_id = json::parse(bg.output)["assigned_id"];
    CliResult open = At(hub, {"consent", "reviews"}, "org.compliance");
    ASSERT_EQ(open.exit_code, 0) << open.output;
    EXPECT_NE(open.output.find(bg_id + "  org.er/u-staff"), std::string::npos) << open.output;
    EXPECT_NE(open.output.find("OPEN"), std::string::npos);
    CliResult reviewed = At(hub, With({"consent", "review", "--break-glass", bg_id, "--appropriate",
                                       "--notes", "overdose confirmed"},
                                      As("org.compliance", "compliance")));
    ASSERT_EQ(reviewed.exit_code, 0) << reviewed.output;
    EXPECT_NE(At(hub, {"consent", "reviews"}, "org.compliance").output.find("no break-glass"),
              std::string::npos);

    // The hospital revokes; the decision turns to deny.
    CliResult revoked = At(hub, With({"consent", "revoke", "--consent", consent_id, "--reason",
                                      "patient withdrew by phone"},
                                     As("org.stmarys", "sender")));
    ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
    check = At(hub,
               {"consent", "check", "--subject", subject, "--recipient", "org.foodbank",
                "--purpose", "care-coordination", "--category", "social-needs"},
               "org.compliance");
    EXPECT_NE(check.output.find("DENY   social-needs"), std::string::npos) << check.output;

    // A second registration of the same person (under the hospital's other
    // authority), merged by the hospital's admin: it holds both.
    CliResult s2 = At(hub, {"subject", "resolve", "--id", "org.stmarys/hbn=XK1"}, "org.stmarys");
    ASSERT_EQ(s2.exit_code, 0) << s2.output;
    const std::string second = s2.output.substr(0, s2.output.find('\n'));
    CliResult ambiguous =
        At(hub,
           {"subject", "resolve", "--id", "org.stmarys/mrn=000123", "--id", "org.stmarys/hbn=XK1"},
           "org.stmarys");
    EXPECT_EQ(ambiguous.exit_code, 3);
    EXPECT_NE(ambiguous.output.find("ambiguous"), std::string::npos) << ambiguous.output;
    CliResult merged = At(hub, With({"subject", "merge", "--survivor", subject, "--merged", second,
                                     "--reason", "duplicate registration"},
                                    As("org.stmarys", "admin", "u-admin")));
    ASSERT_EQ(merged.exit_code, 0) << merged.output;
    CliResult report = At(hub, {"consent", "report", "--subject", second}, "org.compliance");
    ASSERT_EQ(report.exit_code, 0) << report.output;
    EXPECT_NE(report.output.find("Subject: " + subject + " (also recorded as " + second + ")"),
              std::string::npos)
        << report.output;
    CliResult csv = At(hub, {"consent", "report", "--subject", subject, "--csv"}, "org.compliance");
    ASSERT_EQ(csv.exit_code, 0) << csv.output;
    EXPECT_EQ(csv.output.rfind("date,recipient_agency", 0), 0u) << csv.output;
  }

 private:
  Hubs hubs_;
  const TempDir& dir_;
};

TEST(ConsentIntegration, OneProcess) {
  TempDir dir;
  Hubs hubs;
  auto p = StartCareloopd({"--data-dir", dir.Sub("hub")}, &hubs.directory);
  ASSERT_TRUE(p.ok()) << p.status();
  hubs.consent = hubs.directory;
  hubs.admin_key = dir.Sub("hub/keys/hub-admin.pem");
  Scenario(hubs, dir).Run();
}

// Split: ledger, directory and consent each in their own careloopd; the
// consent process keeps its own directory projection over the remote ledger.
TEST(SplitIntegration, ConsentInItsOwnProcess) {
  TempDir dir;
  std::string ledger_address, ledger_node;
  auto ledger = StartCareloopd({"--services=ledger", "--data-dir", dir.Sub("ledger-node")},
                               &ledger_node, &ledger_address);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  Hubs hubs;
  auto directory = StartCareloopd(
      {"--services=directory", "--ledger", ledger_address, "--data-dir", dir.Sub("directory-node")},
      &hubs.directory);
  ASSERT_TRUE(directory.ok()) << directory.status();
  hubs.admin_key = dir.Sub("directory-node/keys/hub-admin.pem");
  std::vector<std::string> consent_args = {
      "--services=consent",    "--ledger",    ledger_address, "--data-dir",
      dir.Sub("consent-node"), "--admin-key", hubs.admin_key};
  auto consent = StartCareloopd(consent_args, &hubs.consent);
  ASSERT_TRUE(consent.ok()) << consent.status();
  ASSERT_NE(hubs.consent, hubs.directory);
  Scenario(hubs, dir).Run();

  // A restarted consent process answers from the ledger alone.
  (*consent)->Signal(SIGTERM);
  ASSERT_EQ(*(*consent)->Wait(absl::Seconds(60)), 0) << (*consent)->output();
  auto again = StartCareloopd(consent_args, &hubs.consent);
  ASSERT_TRUE(again.ok()) << again.status();
  CliResult s =
      At(hubs.consent, {"subject", "resolve", "--id", "org.stmarys/mrn=000123"}, "org.stmarys");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const std::string subject = s.output.substr(0, s.output.find('\n'));
  CliResult list =
      At(hubs.consent, {"--json", "consent", "list", "--subject", subject}, "org.compliance");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  json j = json::parse(list.output);
  ASSERT_EQ(j["consents"].size(), 1u);
  EXPECT_EQ(j["consents"][0]["consent"]["status"], "CONSENT_REVOKED");
  // The consent events live in the ledger process.
  CliResult events =
      RunCli({"ledger", "--ledger", ledger_address, "read", "--stream", "consent/" + subject});
  ASSERT_EQ(events.exit_code, 0) << events.output;
  EXPECT_NE(events.output.find("GrantConsent"), std::string::npos) << events.output;
  EXPECT_NE(events.output.find("RevokeConsent"), std::string::npos) << events.output;
  EXPECT_NE(events.output.find("BreakGlassInvoked"), std::string::npos) << events.output;
}

}  // namespace
}  // namespace careloop::testing
