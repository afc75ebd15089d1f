// The directory as a person uses it: the careloop CLI against careloopd, in
// one process and split (ledger and directory each in their own process).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
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

// One careloopd in dev mode, its hub admin's key beside it.
class DirectoryIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = StartCareloopd({"--data-dir", dir_.Sub("hub")}, &hub_.address);
    ASSERT_TRUE(p.ok()) << p.status();
    process_ = *std::move(p);
    hub_.admin_key = dir_.Sub("hub/keys/hub-admin.pem");
  }
  TempDir dir_;
  Hub hub_;
  std::unique_ptr<ChildProcess> process_;
};

TEST_F(DirectoryIntegration, OneProcess) { RunDirectoryScenario(hub_, dir_); }

// An Open Referral dataset imported by the hub admin: the published 3.0
// organization and a pantry with a food-insecurity service and beds. A dry
// run signs nothing; the import lists both (no keys: not onboarded) and
// reports what it cannot map; a second import changes nothing.
TEST_F(DirectoryIntegration, HsdsImportListsAgenciesOnceAndReportsWhatItCannotMap) {
  const TempDir& dir = dir_;
  const Hub& hub = hub_;
  std::filesystem::create_directories(dir.Sub("hsds"));
  std::ofstream(dir.Sub("hsds/organization_full.json"))
      << ReadFileOrDie(TestData("hsds/3.0/organization_full.json"));
  json pantry = {{"id", "0b6f3c2e-5d1a-4c8e-9f00-1a2b3c4d5e6f"},
                 {"name", "Corner Pantry"},
                 {"services",
                  {{{"id", "9c1d2e3f-0000-4000-8000-000000000001"},
                    {"name", "Groceries"},
                    {"status", "active"},
                    {"attributes", {{{"taxonomy_term", {{"code", "food-insecurity"}}}}}},
                    {"capacities",
                     {{{"id", "cap-1"},
                       {"unit", {{"id", "u-bed"}, {"name", "Bed"}, {"identifier", "bed"}}},
                       {"available", 5},
                       {"maximum", 10}}}}}}}};
  std::ofstream(dir.Sub("hsds/pantry.json")) << pantry.dump();
  std::vector<std::string> import = {"--dev-admin",   "hub-admin",  "--json",
                                     "directory",     "import",     "--hsds",
                                     dir.Sub("hsds"), "--sign-key", hub.admin_key};
  auto run = [&](std::vector<std::string> extra = {}) {
    std::vector<std::string> args = import;
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Cli(hub, args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output, nullptr, false);
  };
  const std::string org = "hsds.d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610";
  const std::string pantry_id = "hsds.0b6f3c2e-5d1a-4c8e-9f00-1a2b3c4d5e6f";

  json dry = run({"--dry-run"});
  EXPECT_EQ(dry["applied"], false);
  EXPECT_EQ(dry["agencies"].size(), 2u);
  EXPECT_EQ(Cli(hub, {"--dev-admin", "hub-admin", "agency", "show", "--id", org}).exit_code, 3)
      << "a dry run signs nothing";
  // Reads need the caller's identity; without it nothing is signed.
  EXPECT_EQ(
      Cli(hub, {"directory", "import", "--hsds", dir.Sub("hsds"), "--sign-key", hub.admin_key})
          .exit_code,
      3);

  json first = run();
  ASSERT_EQ(first["agencies"].size(), 2u) << first.dump();
  for (const json& a : first["agencies"]) EXPECT_EQ(a["change"], "register") << a.dump();
  ASSERT_EQ(first["capacity"].size(), 1u) << first.dump();
  EXPECT_EQ(first["capacity"][0]["open_slots"], 5);
  bool reported = false;
  for (const json& r : first["reported"])
    reported =
        reported || r["why"].get<std::string>().find("careloop service code") != std::string::npos;
  EXPECT_TRUE(reported) << first.dump();

  json second = run();
  for (const json& a : second["agencies"]) EXPECT_EQ(a["change"], "unchanged") << a.dump();
  EXPECT_TRUE(second["capacity"].empty()) << second.dump();

  // Listed and searchable; no keys, no actors: not onboarded.
  CliResult found = Cli(hub, {"--dev-admin", "hub-admin", "--json", "agency", "search", "--service",
                              "food-insecurity"});
  ASSERT_EQ(found.exit_code, 0) << found.output;
  json agencies = json::parse(found.output)["agencies"];
  ASSERT_EQ(agencies.size(), 1u) << found.output;
  EXPECT_EQ(agencies[0]["agency_id"], pantry_id);
  EXPECT_FALSE(agencies[0].contains("keys")) << found.output;
  EXPECT_FALSE(agencies[0].contains("actors")) << found.output;
  EXPECT_EQ(Cli(hub, {"--dev-admin", "hub-admin", "directory", "import", "--hsds",
                      dir.Sub("nothing-here"), "--sign-key", hub.admin_key})
                .exit_code,
            2);
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
