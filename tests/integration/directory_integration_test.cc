// The directory as a person uses it: the careloop CLI against careloopd, in
// one process and split (ledger and directory each in their own process).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using nlohmann::json;

struct Hub {
  std::string address;
  std::string admin_key;
};

CliResult Cli(const Hub& hub, std::vector<std::string> args) {
  args.insert(args.begin(), {"--hub", hub.address});
  return RunCli(args);
}

std::vector<std::string> AsAdmin(const Hub& hub) { return {"--sign-key", hub.admin_key}; }

void RunDirectoryScenario(const Hub& hub, const TempDir& dir) {
  ASSERT_EQ(
      RunCli({"keys", "generate", "--out", dir.Sub("fb.pem"), "--public-out", dir.Sub("fb.pub")})
          .exit_code,
      0);
  std::vector<std::string> reg = {"agency",
                                  "register",
                                  "--id",
                                  "org.foodbank",
                                  "--name",
                                  "Food Bank",
                                  "--kind",
                                  "community-agency",
                                  "--service",
                                  "food-insecurity",
                                  "--area-postal-code",
                                  "97201",
                                  "--language",
                                  "es",
                                  "--agency-role",
                                  "receiver",
                                  "--agency-public-key",
                                  dir.Sub("fb.pub"),
                                  "--admin-user",
                                  "u-admin",
                                  "--message-id",
                                  "reg-1",
                                  "--save-envelope",
                                  dir.Sub("reg-1.env")};
  for (auto& a : AsAdmin(hub)) reg.push_back(a);
  CliResult registered = Cli(hub, reg);
  ASSERT_EQ(registered.exit_code, 0) << registered.output;
  // A retry of the same bytes is answered with the original receipt, not
  // applied twice; the same message id signed anew is other bytes: refused.
  CliResult retried = Cli(hub, {"envelope", "submit", "--file", dir.Sub("reg-1.env")});
  ASSERT_EQ(retried.exit_code, 0) << retried.output;
  EXPECT_EQ(retried.output, registered.output);
  CliResult resigned = Cli(hub, reg);
  EXPECT_EQ(resigned.exit_code, 3);
  EXPECT_NE(resigned.output.find("ALREADY_EXISTS"), std::string::npos) << resigned.output;

  std::vector<std::string> as_agency = {
      "--sign-key", dir.Sub("fb.pem"), "--as",  "org.foodbank", "--user",
      "u-admin",    "--role",          "admin", "--key-id",     "k1"};
  std::vector<std::string> add = {"actor",     "add",    "--agency",     "org.foodbank",
                                  "--user-id", "u-case", "--actor-role", "receiver"};
  add.insert(add.end(), as_agency.begin(), as_agency.end());
  ASSERT_EQ(Cli(hub, add).exit_code, 0);
  // The same signer from a named profile instead of flags.
  std::ofstream(dir.Sub("profiles.toml"))
      << "[foodbank]\nhub = \"" << hub.address << "\"\nsign_key = \"" << dir.Sub("fb.pem")
      << "\"\nas = \"org.foodbank\"\nuser = \"u-admin\"\nrole = "
         "\"admin\"\nkey_id = \"k1\"\n";
  ::setenv("CARELOOP_PROFILES", dir.Sub("profiles.toml").c_str(), 1);
  CliResult by_profile =
      RunCli({"--profile", "foodbank", "actor", "add", "--agency", "org.foodbank", "--user-id",
              "u-case-2", "--actor-role", "receiver"});
  EXPECT_EQ(by_profile.exit_code, 0) << by_profile.output;
  EXPECT_EQ(RunCli({"--profile", "nobody", "agency", "search"}).exit_code, 2);

  // Reads need an identity: the hub admin's here (dev mode: --dev-admin).
  CliResult anonymous = Cli(hub, {"agency", "search"});
  EXPECT_EQ(anonymous.exit_code, 3);
  EXPECT_NE(anonymous.output.find("UNAUTHENTICATED"), std::string::npos) << anonymous.output;
  CliResult found = Cli(hub, {"--dev-admin", "hub-admin", "--json", "agency", "search", "--service",
                              "food-insecurity", "--postal-code", "97201"});
  ASSERT_EQ(found.exit_code, 0) << found.output;
  json j = json::parse(found.output);
  ASSERT_EQ(j["agencies"].size(), 1u);
  EXPECT_EQ(j["agencies"][0]["agency_id"], "org.foodbank");
  EXPECT_EQ(j["agencies"][0]["actors"].size(), 3u);

  // Revoked key: refused with the key's own status (exit 3).
  std::vector<std::string> revoke = {
      "keys", "revoke", "--agency", "org.foodbank", "--agency-key-id", "k1", "--reason", "lost"};
  for (auto& a : AsAdmin(hub)) revoke.push_back(a);
  ASSERT_EQ(Cli(hub, revoke).exit_code, 0);
  std::vector<std::string> remove = {"actor",        "remove",    "--agency",
                                     "org.foodbank", "--user-id", "u-case"};
  remove.insert(remove.end(), as_agency.begin(), as_agency.end());
  CliResult refused = Cli(hub, remove);
  EXPECT_EQ(refused.exit_code, 3);
  EXPECT_NE(refused.output.find("UNAUTHENTICATED"), std::string::npos) << refused.output;
}

TEST(DirectoryIntegration, OneProcess) {
  TempDir dir;
  Hub hub;
  auto p = StartCareloopd({"--data-dir", dir.Sub("hub")}, &hub.address);
  ASSERT_TRUE(p.ok()) << p.status();
  hub.admin_key = dir.Sub("hub/keys/hub-admin.pem");
  RunDirectoryScenario(hub, dir);
}

// Split: the ledger in one careloopd, the directory in another that reaches it
// over gRPC. Restarting the directory rebuilds its state from the ledger.
TEST(SplitIntegration, DirectoryInItsOwnProcess) {
  TempDir dir;
  std::string ledger_address, ledger_node;
  auto ledger = StartCareloopd({"--services=ledger", "--data-dir", dir.Sub("ledger-node")},
                               &ledger_node, &ledger_address);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  Hub hub;
  std::vector<std::string> args = {"--services=directory", "--ledger", ledger_address, "--data-dir",
                                   dir.Sub("directory-node")};
  auto directory = StartCareloopd(args, &hub.address);
  ASSERT_TRUE(directory.ok()) << directory.status();
  hub.admin_key = dir.Sub("directory-node/keys/hub-admin.pem");
  RunDirectoryScenario(hub, dir);

  (*directory)->Signal(SIGTERM);
  ASSERT_EQ(*(*directory)->Wait(absl::Seconds(60)), 0) << (*directory)->output();
  auto again = StartCareloopd(args, &hub.address);
  ASSERT_TRUE(again.ok()) << again.status();
  CliResult shown = Cli(
      hub, {"--dev-agency", "org.foodbank", "--json", "agency", "show", "--id", "org.foodbank"});
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  json j = json::parse(shown.output);
  EXPECT_EQ(j["keys"][0]["revocation_reason"], "lost");
  // The events are in the ledger process, readable there.
  CliResult events =
      RunCli({"ledger", "--ledger", ledger_address, "read", "--stream", "agency/org.foodbank"});
  ASSERT_EQ(events.exit_code, 0);
  EXPECT_NE(events.output.find("RegisterAgency"), std::string::npos) << events.output;
  EXPECT_NE(events.output.find("RevokeAgencyKey"), std::string::npos);
}

}  // namespace
}  // namespace careloop::testing
