// Referrals as people use them: the careloop CLI against careloopd, in one
// process and split (ledger, directory, consent and referral each in their
// own process). A hospital sends, the food bank sees only what consent
// allows and checks it, accepts and completes; the hospital sees every
// status; a third agency sees nothing.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/escaping.h"
#include "services/trust/ed25519.h"
#include "tests/support/http_server.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using nlohmann::json;

struct Hubs {
  std::string directory, consent, referral, notification, audit, admin_key;
  std::string vkey;  // the hub's verifier key file
};

CliResult At(const std::string& hub, std::vector<std::string> args,
             const std::string& as_agency = "") {
  return CliAt(hub, std::move(args), as_agency);
}

std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& b) {
  return Concat(std::move(a), b);
}

void RunReferralScenario(const Hubs& hubs, const TempDir& dir) {
  auto onboard = [&](const std::string& id, const std::string& kind, const std::string& role,
                     std::vector<std::string> extra = {}) {
    ASSERT_EQ(RunCli({"keys", "generate", "--out", dir.Sub(id + ".pem")}).exit_code, 0);
    CliResult r = At(hubs.directory,
                     With({"agency", "register", "--sign-key", hubs.admin_key, "--id", id, "--name",
                           "Agency " + id, "--kind", kind, "--agency-role", role,
                           "--agency-public-key", dir.Sub(id + ".pem"), "--admin-user", "u-admin"},
                          extra));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = At(hubs.directory, {"actor", "add", "--sign-key", hubs.admin_key, "--agency", id,
                            "--user-id", "u-staff", "--actor-role", role});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  };
  auto as = [&](const std::string& id, const std::string& role) {
    return std::vector<std::string>{
        "--sign-key", dir.Sub(id + ".pem"), "--as", id, "--user", "u-staff", "--role",
        role,         "--key-id",           "k1"};
  };
  onboard("org.stmarys", "hospital", "sender");
  onboard("org.foodbank", "community-agency", "receiver", {"--service", "food-insecurity"});
  onboard("org.shelter", "community-agency", "receiver", {"--service", "food-insecurity"});
  onboard("org.privacy", "other", "compliance");

  // The food bank also takes its events by webhook (set by the hub admin for it).
  TestHttpServer endpoint;
  CliResult hook = At(hubs.notification, {"webhook", "set", "--sign-key", hubs.admin_key,
                                          "--agency", "org.foodbank", "--url", endpoint.Url()});
  ASSERT_EQ(hook.exit_code, 0) << hook.output;
  CliResult tested = At(hubs.notification, {"webhook", "test"}, "org.foodbank");
  EXPECT_EQ(tested.exit_code, 0) << tested.output;
  EXPECT_NE(tested.output.find("delivered: HTTP 204"), std::string::npos) << tested.output;
  EXPECT_EQ(At(hubs.notification, {"webhook", "set", "--sign-key", hubs.admin_key, "--agency",
                                   "org.foodbank", "--url", "http://example.org/x"})
                .exit_code,
            3)
      << "plain http to a non-loopback host";

  // The patient's consent: contact and social needs, any agency, care coordination.
  CliResult s =
      At(hubs.consent, {"subject", "resolve", "--id", "org.stmarys/mrn=000123"}, "org.stmarys");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const std::string subject = s.output.substr(0, s.output.find('\n'));
  std::ofstream(dir.Sub("form.pdf")) << "signed form";
  CliResult granted =
      At(hubs.consent, With({"consent", "grant", "--subject", subject, "--network", "--purpose",
                             "care-coordination", "--category", "contact", "--category",
                             "social-needs", "--evidence-file", dir.Sub("form.pdf")},
                            as("org.stmarys", "sender")));
  ASSERT_EQ(granted.exit_code, 0) << granted.output;

  // The hospital sends, in three sections; behavioural health is withheld.
  const std::vector<std::string> send =
      With({"referral",   "send",
            "--id",       "r-1001",
            "--subject",  "org.stmarys/mrn=000123",
            "--service",  "food-insecurity",
            "--reason",   "discharge-food-insecurity",
            "--priority", "urgent",
            "--to",       "org.foodbank",
            "--section",  "contact:contact:phone 555-0100",
            "--section",  "needs:social-needs:hunger vital sign positive",
            "--section",  "bh:behavioral-health:PHQ-9 of 14"},
           as("org.stmarys", "sender"));
  CliResult sent = At(hubs.referral, send);
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  EXPECT_NE(sent.output.find("sent org.stmarys/r-1001 to org.foodbank"), std::string::npos)
      << sent.output;
  EXPECT_NE(sent.output.find("withheld bh (behavioral-health)"), std::string::npos) << sent.output;
  // A second open referral for the same person and need is refused.
  CliResult dup = At(hubs.referral, send);
  EXPECT_EQ(dup.exit_code, 3) << dup.output;

  // The food bank's inbox; what it sees, checked with the hospital's key.
  CliResult inbox = At(hubs.referral, {"referral", "inbox"}, "org.foodbank");
  ASSERT_EQ(inbox.exit_code, 0) << inbox.output;
  EXPECT_NE(inbox.output.find("org.stmarys/r-1001  requested"), std::string::npos) << inbox.output;
  CliResult shown = At(
      hubs.referral,
      {"referral", "show", "--referral", "org.stmarys/r-1001", "--directory-hub", hubs.directory},
      "org.foodbank");
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_NE(shown.output.find("hunger vital sign positive"), std::string::npos) << shown.output;
  EXPECT_EQ(shown.output.find("PHQ-9"), std::string::npos) << "withheld content leaked";
  EXPECT_NE(shown.output.find("withheld bh"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("signature of org.stmarys (key k1): verified"), std::string::npos)
      << shown.output;
  EXPECT_NE(shown.output.find("sections against the signed digests: verified"), std::string::npos)
      << shown.output;
  // With a key the recipient holds itself.
  CliResult with_key = At(hubs.referral,
                          {"referral", "show", "--referral", "org.stmarys/r-1001", "--sender-key",
                           dir.Sub("org.stmarys.pem")},
                          "org.foodbank");
  EXPECT_NE(with_key.output.find("(key k1): verified"), std::string::npos) << with_key.output;
  CliResult wrong_key = At(hubs.referral,
                           {"referral", "show", "--referral", "org.stmarys/r-1001", "--sender-key",
                            dir.Sub("org.shelter.pem")},
                           "org.foodbank");
  EXPECT_NE(wrong_key.output.find("NOT VERIFIED"), std::string::npos) << wrong_key.output;
  // A third agency sees nothing and changes nothing.
  EXPECT_EQ(
      At(hubs.referral, {"referral", "show", "--referral", "org.stmarys/r-1001"}, "org.shelter")
          .exit_code,
      3);
  CliResult stranger =
      At(hubs.referral, With({"referral", "accept", "--referral", "org.stmarys/r-1001"},
                             as("org.shelter", "receiver")));
  EXPECT_EQ(stranger.exit_code, 3) << stranger.output;
  EXPECT_NE(stranger.output.find("PERMISSION_DENIED"), std::string::npos) << stranger.output;

  // The thread: the hospital writes, the food bank reads it under the same consent.
  CliResult wrote =
      At(hubs.referral, With({"referral", "message", "--referral", "org.stmarys/r-1001", "--text",
                              "call after 5pm", "--text-category", "contact"},
                             as("org.stmarys", "sender")));
  ASSERT_EQ(wrote.exit_code, 0) << wrote.output;
  CliResult read = At(
      hubs.referral,
      {"referral", "show", "--referral", "org.stmarys/r-1001", "--directory-hub", hubs.directory},
      "org.foodbank");
  EXPECT_NE(read.output.find("text (contact): call after 5pm"), std::string::npos) << read.output;
  // Accept, complete; the hospital sees every status.
  CliResult accepted =
      At(hubs.referral, With({"referral", "accept", "--referral", "org.stmarys/r-1001"},
                             as("org.foodbank", "receiver")));
  ASSERT_EQ(accepted.exit_code, 0) << accepted.output;
  CliResult again =
      At(hubs.referral, With({"referral", "accept", "--referral", "org.stmarys/r-1001"},
                             as("org.foodbank", "receiver")));
  EXPECT_EQ(again.exit_code, 3);
  EXPECT_NE(again.output.find("the referral is accepted"), std::string::npos) << again.output;
  CliResult completed =
      At(hubs.referral, With({"referral", "complete", "--referral", "org.stmarys/r-1001",
                              "--provided", "weekly food box", "--enrolment", "enrolled"},
                             as("org.foodbank", "receiver")));
  ASSERT_EQ(completed.exit_code, 0) << completed.output;
  CliResult mine = At(hubs.referral, {"--json", "referral", "sent"}, "org.stmarys");
  ASSERT_EQ(mine.exit_code, 0) << mine.output;
  json j = json::parse(mine.output);
  ASSERT_EQ(j["referrals"].size(), 1u);
  EXPECT_EQ(j["referrals"][0]["status"], "TASK_COMPLETED");
  CliResult history =
      At(hubs.referral, {"referral", "show", "--referral", "org.stmarys/r-1001"}, "org.stmarys");
  ASSERT_EQ(history.exit_code, 0) << history.output;
  for (const char* step : {"ReferralRouted  requested", "StatusChanged  accepted",
                           "StatusChanged  completed", "outcome: weekly food box"}) {
    EXPECT_NE(history.output.find(step), std::string::npos) << step << "\n" << history.output;
  }
  // The disclosures are on the subject's report.
  CliResult report = At(hubs.consent, {"consent", "report", "--subject", subject}, "org.privacy");
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_NE(report.output.find("To:       Agency org.foodbank (org.foodbank)"), std::string::npos)
      << report.output;

  // Delivery: the food bank's consumer gets, in order, everything that
  // concerns it since it was registered, and acknowledges it.
  auto kinds = [](const std::string& lines, const std::string& referral) {
    std::vector<std::string> out;
    std::istringstream in(lines);
    uint64_t last = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] != '{') continue;  // the CLI's notes on stderr
      json n = json::parse(line);
      const uint64_t seq = std::stoull(n["seq"].get<std::string>());
      EXPECT_GT(seq, last) << "in ledger order";
      last = seq;
      if (n.value("referral", "") == referral) out.push_back(n["kind"]);
    }
    return out;
  };
  CliResult food =
      At(hubs.notification, {"--json", "watch", "--consumer", "main", "--idle-exit", "1"},
         "org.foodbank");
  ASSERT_EQ(food.exit_code, 0) << food.output;
  EXPECT_EQ(kinds(food.output, "org.stmarys/r-1001"),
            (std::vector<std::string>{"referral.received", "referral.message", "referral.status",
                                      "referral.status"}))
      << food.output;
  EXPECT_NE(food.output.find("directory.changed"), std::string::npos) << "its registration";
  EXPECT_EQ(food.output.find("PHQ-9"), std::string::npos) << "withheld content leaked";
  // The ack moved its cursor: a second run has nothing new.
  CliResult again_food =
      At(hubs.notification, {"watch", "--consumer", "main", "--idle-exit", "1"}, "org.foodbank");
  ASSERT_EQ(again_food.exit_code, 0) << again_food.output;
  EXPECT_NE(again_food.output.find("consumer main resumes after seq"), std::string::npos)
      << again_food.output;
  EXPECT_EQ(again_food.output.find(".changed"), std::string::npos) << again_food.output;
  EXPECT_EQ(again_food.output.find("referral."), std::string::npos) << again_food.output;
  CliResult status = At(hubs.notification, {"deliveries", "status"}, "org.foodbank");
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("main  acked"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("lag 0"), std::string::npos) << status.output;
  // The hospital learns every step, including that the food bank got it.
  CliResult hospital =
      At(hubs.notification, {"--json", "watch", "--consumer", "main", "--idle-exit", "1"},
         "org.stmarys");
  ASSERT_EQ(hospital.exit_code, 0) << hospital.output;
  std::vector<std::string> told = kinds(hospital.output, "org.stmarys/r-1001");
  for (const char* k :
       {"referral.routed", "referral.delivered", "referral.viewed", "referral.status"}) {
    EXPECT_NE(std::find(told.begin(), told.end(), k), told.end()) << k << "\n" << hospital.output;
  }
  CliResult shown_after =
      At(hubs.referral, {"referral", "show", "--referral", "org.stmarys/r-1001"}, "org.stmarys");
  EXPECT_NE(shown_after.output.find("delivered to the recipient"), std::string::npos)
      << shown_after.output;
  // The webhook got the referral too, signed with the published webhook key.
  CliResult key = At(hubs.notification, {"--json", "webhook", "key"}, "org.foodbank");
  ASSERT_EQ(key.exit_code, 0) << key.output;
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(
      json::parse(key.output)["public_key"].get<std::string>().substr(5), &raw));
  auto pub = trust::Ed25519PublicKey::FromRaw(raw);
  ASSERT_TRUE(pub.ok());
  const bool got_referral = endpoint.WaitFor(
      [](const TestHttpServer::Request& req) {
        return req.body.find("\"referral.received\"") != std::string::npos &&
               req.body.find("org.stmarys/r-1001") != std::string::npos;
      },
      absl::Seconds(30));
  for (const auto& req : endpoint.requests()) {
    std::string sig;
    ASSERT_TRUE(absl::Base64Unescape(req.headers.at("webhook-signature").substr(4), &sig));
    EXPECT_TRUE(pub->Verify(absl::StrCat(req.headers.at("webhook-id"), ".",
                                         req.headers.at("webhook-timestamp"), ".", req.body),
                            sig));
  }
  EXPECT_TRUE(got_referral) << endpoint.requests().size() << " webhook requests";
  EXPECT_EQ(json::parse(At(hubs.notification, {"--json", "deliveries", "status"}, "org.foodbank")
                            .output)["webhook"]["enabled"],
            true);

  // Audit: an agency may not query; compliance may.
  EXPECT_EQ(At(hubs.audit, {"audit", "query", "--subject", subject}, "org.foodbank").exit_code, 3);
  CliResult trail = At(hubs.audit, {"audit", "trail", "--subject", subject}, "org.privacy");
  ASSERT_EQ(trail.exit_code, 0) << trail.output;
  for (const char* step : {"GrantConsent", "DisclosureRecorded"}) {
    EXPECT_NE(trail.output.find(step), std::string::npos) << step << "\n" << trail.output;
  }
  CliResult q = At(
      hubs.audit, {"audit", "query", "--referral", "org.stmarys/r-1001", "--type", "StatusChanged"},
      "org.privacy");
  ASSERT_EQ(q.exit_code, 0) << q.output;
  EXPECT_NE(q.output.find("StatusChanged"), std::string::npos) << q.output;
  // An export bundle checks out offline with only the hub's verifier key, and
  // one altered character is found by line.
  const std::string bundle = dir.Sub("bundle.jsonl");
  CliResult exported =
      At(hubs.audit, {"audit", "export", "--subject", subject, "--payloads", "--out", bundle},
         "org.privacy");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  CliResult verified = RunCli({"audit", "verify-bundle", bundle, "--vkey", hubs.vkey});
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_NE(verified.output.find("verified: "), std::string::npos) << verified.output;
  {
    std::string text = ReadFileOrDie(bundle);
    const size_t second_line = text.find('\n') + 1;
    const size_t at = text.find("header_bytes\":\"", second_line) + 20;
    text[at] = text[at] == 'A' ? 'B' : 'A';
    std::ofstream(dir.Sub("tampered.jsonl")) << text;
    CliResult bad =
        RunCli({"audit", "verify-bundle", dir.Sub("tampered.jsonl"), "--vkey", hubs.vkey});
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_NE(bad.output.find("NOT VERIFIED: line 2"), std::string::npos) << bad.output;
  }
  // Any agency monitors the log, and proves its own events offline.
  const std::string state = dir.Sub("monitor.state");
  CliResult m1 =
      At(hubs.audit, {"audit", "monitor", "--state", state, "--vkey", hubs.vkey}, "org.foodbank");
  EXPECT_EQ(m1.exit_code, 0) << m1.output;
  EXPECT_NE(m1.output.find("first head"), std::string::npos) << m1.output;
  CliResult m2 =
      At(hubs.audit, {"audit", "monitor", "--state", state, "--vkey", hubs.vkey}, "org.foodbank");
  EXPECT_EQ(m2.exit_code, 0) << m2.output;
  EXPECT_NE(m2.output.find("consistent: "), std::string::npos) << m2.output;
  CliResult other = RunCli({"keys", "generate", "--out", dir.Sub("other.pem"), "--name", "x"});
  const std::string other_vkey = dir.Sub("other.vkey");
  std::ofstream(other_vkey) << other.output.substr(other.output.find("verifier key: ") + 14);
  CliResult forged =
      At(hubs.audit, {"audit", "monitor", "--state", state, "--vkey", other_vkey}, "org.foodbank");
  EXPECT_EQ(forged.exit_code, 1) << forged.output;
  EXPECT_NE(forged.output.find("ALERT: FORGED HEAD"), std::string::npos) << forged.output;
  CliResult fhir = At(hubs.audit, {"audit", "fhir", "--subject", subject}, "org.privacy");
  ASSERT_EQ(fhir.exit_code, 0) << fhir.output;
  EXPECT_NE(fhir.output.find("\"resourceType\":\"AuditEvent\""), std::string::npos) << fhir.output;

  // A third agency is told nothing about it.
  CliResult shelter =
      At(hubs.notification, {"--json", "watch", "--consumer", "main", "--idle-exit", "1"},
         "org.shelter");
  ASSERT_EQ(shelter.exit_code, 0) << shelter.output;
  EXPECT_EQ(shelter.output.find("r-1001"), std::string::npos) << shelter.output;

  // The same exchange in FHIR terms from the CLI: the SDOH IG's
  // ServiceRequest in a transaction Bundle, and the referral shown as the
  // FHIR API shows it.
  json sr = json::parse(ReadFileOrDie(
      TestData("fhir/sdoh-clinicalcare/SDOHCC-ServiceRequest-HungerVitalSign-Example-1.json")));
  sr["subject"] = json{{"reference", "urn:uuid:p"}};
  auto bundle_for = [&sr](const std::string& requester) {
    const json task{
        {"resourceType", "Task"},
        {"status", "requested"},
        {"intent", "order"},
        {"code",
         {{"coding", json::array({{{"system", "http://hl7.org/fhir/CodeSystem/task-code"},
                                   {"code", "fulfill"}}})}}},
        {"focus", {{"reference", "urn:uuid:sr"}}},
        {"for", {{"reference", "urn:uuid:p"}}},
        {"requester", {{"identifier", {{"system", "urn:careloop:user"}, {"value", requester}}}}},
        {"owner", {{"reference", "Organization/org.foodbank"}}}};
    const json patient = json::parse(R"({"resourceType":"Patient","identifier":[{"type":{
        "coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
        "value":"000124"}]})");
    json b{{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
    for (const auto& [url, r] : {std::pair<std::string, json>{"urn:uuid:t", task},
                                 {"urn:uuid:sr", sr},
                                 {"urn:uuid:p", patient}}) {
      b["entry"].push_back({{"fullUrl", url},
                            {"resource", r},
                            {"request", {{"method", "POST"}, {"url", r["resourceType"]}}}});
    }
    return b.dump();
  };
  std::ofstream(dir.Sub("bundle.json")) << bundle_for("u-staff");
  std::ofstream(dir.Sub("other-bundle.json")) << bundle_for("u-someone-else");
  CliResult refused =
      At(hubs.referral,
         With({"referral", "send", "--fhir", dir.Sub("other-bundle.json"), "--id", "r-fhir-0"},
              as("org.stmarys", "sender")));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("requester is u-someone-else"), std::string::npos)
      << refused.output;
  CliResult fhir_sent =
      At(hubs.referral,
         With({"referral", "send", "--fhir", dir.Sub("bundle.json"), "--id", "r-fhir-1"},
              as("org.stmarys", "sender")));
  ASSERT_EQ(fhir_sent.exit_code, 0) << fhir_sent.output;
  EXPECT_NE(fhir_sent.output.find("sent org.stmarys/r-fhir-1 to org.foodbank"), std::string::npos)
      << fhir_sent.output;
  CliResult as_fhir =
      At(hubs.referral, {"referral", "show", "--fhir", "--referral", "org.stmarys/r-fhir-1"},
         "org.stmarys");
  ASSERT_EQ(as_fhir.exit_code, 0) << as_fhir.output;
  const json b = json::parse(as_fhir.output.substr(as_fhir.output.find('{')));
  EXPECT_EQ(b["entry"][0]["resource"]["resourceType"], "Task");
  EXPECT_EQ(b["entry"][0]["resource"]["status"], "requested");
  EXPECT_EQ(b["entry"][0]["resource"]["for"]["identifier"]["value"], "000124");
  EXPECT_EQ(b["entry"][1]["resource"]["category"][0]["coding"][0]["code"], "food-insecurity");
}

TEST(ReferralIntegration, OneProcess) {
  TempDir dir;
  Hubs hubs;
  auto p = StartCareloopd({"--data-dir", dir.Sub("hub")}, &hubs.directory);
  ASSERT_TRUE(p.ok()) << p.status();
  hubs.consent = hubs.referral = hubs.notification = hubs.audit = hubs.directory;
  hubs.vkey = dir.Sub("hub/keys/hub-log.vkey");
  hubs.admin_key = dir.Sub("hub/keys/hub-admin.pem");
  RunReferralScenario(hubs, dir);
}

// Split: ledger, directory, consent, referral, notification and audit each in
// their own careloopd: every service in its own process.
TEST(SplitIntegration, EveryServiceInItsOwnProcess) {
  TempDir dir;
  std::string ledger, ledger_node;
  auto l = StartCareloopd({"--services=ledger", "--data-dir", dir.Sub("ledger-node")}, &ledger_node,
                          &ledger);
  ASSERT_TRUE(l.ok()) << l.status();
  Hubs hubs;
  hubs.admin_key = dir.Sub("directory-node/keys/hub-admin.pem");
  auto d = StartCareloopd(
      {"--services=directory", "--ledger", ledger, "--data-dir", dir.Sub("directory-node")},
      &hubs.directory);
  ASSERT_TRUE(d.ok()) << d.status();
  // The other services, each beside the remote ledger with the admin's key.
  std::vector<std::unique_ptr<ChildProcess>> nodes;
  for (auto [service, address] :
       std::vector<std::pair<std::string, std::string*>>{{"consent", &hubs.consent},
                                                         {"referral", &hubs.referral},
                                                         {"notification", &hubs.notification},
                                                         {"audit", &hubs.audit}}) {
    auto node = StartCareloopd({"--services=" + service, "--ledger", ledger, "--data-dir",
                                dir.Sub(service + "-node"), "--admin-key", hubs.admin_key},
                               address);
    ASSERT_TRUE(node.ok()) << service << ": " << node.status();
    nodes.push_back(*std::move(node));
  }
  hubs.vkey = dir.Sub("ledger-node/keys/hub-log.vkey");
  RunReferralScenario(hubs, dir);
}

}  // namespace
}  // namespace careloop::testing
