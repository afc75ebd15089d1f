// careloopd as a person runs it: health, graceful shutdown on SIGTERM, the
// refusals at start, and the careloop CLI's output and exit codes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "careloop/v1/ledger.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using nlohmann::json;

// The abuse of issue 16: LedgerService.Tail streamed section plaintext to an
// agency on the agencies' port. The ledger has its own socket now: every
// LedgerService method (from the descriptor) is unknown on the agencies'
// listener, with or without the dev header, and answers on the socket, whose
// directory only the hub's user may enter.
TEST(Careloopd, TheLedgerIsNotServedOnTheAgenciesPort) {
  TempDir dir;
  std::string address, ledger;
  auto hub = StartCareloopd({"--data-dir", dir.path()}, &address, &ledger);
  ASSERT_TRUE(hub.ok()) << hub.status();
  EXPECT_EQ(ledger, "unix:" + dir.Sub("run/ledger.sock"));
  const auto perms = std::filesystem::status(dir.Sub("run")).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_all);
  const google::protobuf::ServiceDescriptor* d =
      v1::AppendRequest::descriptor()->file()->FindServiceByName("LedgerService");
  ASSERT_NE(d, nullptr);
  ASSERT_GT(d->method_count(), 10);
  for (int i = 0; i < d->method_count(); ++i) {
    const std::string method = absl::StrCat("/", d->full_name(), "/", d->method(i)->name());
    for (const std::string& as : {std::string(), std::string("org.third"), std::string("hub")}) {
      EXPECT_EQ(CallEmpty(address, method, as).error_code(), grpc::StatusCode::UNIMPLEMENTED)
          << method << " as '" << as << "'";
    }
  }
  // The socket answers (negative control: the same call reaches the ledger).
  EXPECT_TRUE(CallEmpty(ledger, "/careloop.v1.LedgerService/GetHead", "").ok());
  // Unsigned appends only when the operator says they are a dev fact.
  CliResult plain = RunCli({"ledger", "--ledger", ledger, "append", "--stream", "referral/r-1",
                            "--type", "T", "--payload", "x"});
  EXPECT_EQ(plain.exit_code, 2);
  EXPECT_NE(plain.output.find("--unsigned-dev-fact"), std::string::npos);
}

TEST(Careloopd, ServesHealthAndShutsDownCleanlyOnSigterm) {
  TempDir dir;
  std::string address, ledger;
  auto hub = StartCareloopd({"--data-dir", dir.path()}, &address, &ledger);
  ASSERT_TRUE(hub.ok()) << hub.status();
  EXPECT_NE((*hub)->output().find("generated a dev log key at " + dir.path() + "/keys/hub-log.pem"),
            std::string::npos);
  EXPECT_NE((*hub)->output().find("verifier key"), std::string::npos);
  EXPECT_EQ(HealthStatus(address), 1);
  CliResult r = RunCli({"ledger", "--ledger", ledger, "append", "--unsigned-dev-fact", "--stream",
                        "referral/r-1", "--type", "T", "--payload", "x"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  (*hub)->Signal(SIGTERM);
  auto code = (*hub)->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << (*hub)->output();
  const std::string& out = (*hub)->output();
  size_t started = out.find("careloopd.shutdown_started");
  size_t closed = out.find("ledger.closed");
  size_t complete = out.find("careloopd.shutdown_complete");
  ASSERT_NE(started, std::string::npos) << out;
  ASSERT_NE(closed, std::string::npos);
  ASSERT_NE(complete, std::string::npos);
  EXPECT_LT(started, closed);
  EXPECT_LT(closed, complete);
  EXPECT_NE(out.find("tree_size=1"), std::string::npos);
}

// A data dir behind what it acknowledged (here: an old copy of the
// database put back after more was acknowledged) is refused with exit 3,
// the unit's "do not restart", naming the mark and what to do; a copy of a
// backup used as a data dir is refused too.
TEST(Careloopd, RefusesALedgerBehindItsHighWaterMarkWithExitThree) {
  TempDir dir;
  auto append = [](const std::string& ledger, const std::string& stream) {
    CliResult r = RunCli({"ledger", "--ledger", ledger, "append", "--unsigned-dev-fact", "--stream",
                          stream, "--type", "T", "--payload", "x"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  };
  auto run = [&](int appends) {
    std::string address, ledger;
    auto hub = StartCareloopd({"--data-dir", dir.path()}, &address, &ledger);
    ASSERT_TRUE(hub.ok()) << hub.status();
    for (int i = 0; i < appends; ++i) append(ledger, "referral/r-1");
    (*hub)->Signal(SIGTERM);
    ASSERT_EQ(*(*hub)->Wait(absl::Seconds(60)), 0) << (*hub)->output();
  };
  run(2);
  const std::filesystem::path db = dir.Sub("ledger"), old = dir.Sub("old-ledger");
  std::filesystem::copy(db, old, std::filesystem::copy_options::recursive);
  run(3);
  std::filesystem::copy_file(db / "CARELOOP_HIGH_WATER", old / "CARELOOP_HIGH_WATER",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove_all(db);
  std::filesystem::rename(old, db);
  auto child = ChildProcess::Start({CARELOOPD_BINARY, "--listen", "127.0.0.1:0", "--edge-listen",
                                    "off", "--data-dir", dir.path()});
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(*(*child)->Wait(absl::Seconds(60)), 3) << (*child)->output();
  EXPECT_NE((*child)->output().find("starts short"), std::string::npos) << (*child)->output();
  EXPECT_NE((*child)->output().find("careloop ledger restore"), std::string::npos);
}

TEST(Careloopd, RefusesADataDirLockedByAnotherProcess) {
  TempDir dir;
  std::string address;
  auto first = StartCareloopd({"--data-dir", dir.path()}, &address);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ChildProcess::Start({CARELOOPD_BINARY, "--listen", "127.0.0.1:0", "--edge-listen",
                                     "off", "--data-dir", dir.path()});
  ASSERT_TRUE(second.ok());
  auto code = (*second)->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 1);
  EXPECT_NE((*second)->output().find("locked by another careloopd (pid " +
                                     std::to_string((*first)->pid())),
            std::string::npos)
      << (*second)->output();
}

TEST(Careloopd, RefusesAnIncompatibleFormatAndNonDirectories) {
  TempDir dir;
  std::filesystem::create_directories(dir.Sub("ledger"));
  std::ofstream(dir.Sub("ledger/CARELOOP_FORMAT")) << "careloop-ledger-format 9\n";
  auto child = ChildProcess::Start({CARELOOPD_BINARY, "--listen", "127.0.0.1:0", "--edge-listen",
                                    "off", "--data-dir", dir.path()});
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(*(*child)->Wait(absl::Seconds(60)), 1);
  EXPECT_NE((*child)->output().find("format version 9"), std::string::npos) << (*child)->output();

  std::ofstream(dir.Sub("plainfile")) << "x";
  auto file = ChildProcess::Start({CARELOOPD_BINARY, "--listen", "127.0.0.1:0", "--edge-listen",
                                   "off", "--data-dir", dir.Sub("plainfile")});
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*(*file)->Wait(absl::Seconds(60)), 1);
  EXPECT_NE((*file)->output().find("refusing to start"), std::string::npos) << (*file)->output();

  auto open = ChildProcess::Start({CARELOOPD_BINARY, "--listen", "0.0.0.0:0", "--edge-listen",
                                   "off", "--data-dir", dir.Sub("d")});
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(*(*open)->Wait(absl::Seconds(60)), 2);
  EXPECT_NE((*open)->output().find("without TLS"), std::string::npos) << (*open)->output();
}

TEST(CareloopCli, JsonOutputAndExitCodes) {
  TempDir dir;
  std::string address, ledger;
  auto hub = StartCareloopd({"--data-dir", dir.path()}, &address, &ledger);
  ASSERT_TRUE(hub.ok()) << hub.status();
  CliResult ok = RunCli({"--json", "ledger", "--ledger", ledger, "append", "--unsigned-dev-fact",
                         "--stream", "referral/r-1", "--type", "T", "--payload", "hello",
                         "--must-not-exist", "--idempotency-key", "k"});
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  json commit = json::parse(ok.output);
  EXPECT_EQ(commit["first_seq"], "1");  // uint64 is a string in proto JSON
  CliResult dup = RunCli({"ledger", "--ledger", ledger, "append", "--unsigned-dev-fact", "--stream",
                          "referral/r-1", "--type", "T", "--payload", "hello", "--must-not-exist",
                          "--idempotency-key", "k"});
  EXPECT_EQ(dup.exit_code, 0);
  EXPECT_NE(dup.output.find("idempotent retry"), std::string::npos);
  CliResult refused = RunCli({"ledger", "--ledger", ledger, "append", "--unsigned-dev-fact",
                              "--stream", "referral/r-1", "--type", "T", "--must-not-exist"});
  EXPECT_EQ(refused.exit_code, 3);
  EXPECT_NE(refused.output.find("FAILED_PRECONDITION"), std::string::npos);
  EXPECT_EQ(RunCli({"ledger", "--ledger", ledger, "append"}).exit_code, 2);
  EXPECT_EQ(RunCli({"--timeout", "2", "ledger", "--ledger", "unix:" + dir.Sub("none.sock"), "head"})
                .exit_code,
            4);

  // A receipt verifies offline with only the verifier key, and a tampered one does not.
  std::string receipt = dir.Sub("receipt.json");
  ASSERT_EQ(
      RunCli({"ledger", "--ledger", ledger, "receipt", "--seq", "1", "--out", receipt}).exit_code,
      0);
  std::ofstream(dir.Sub("payload")) << "hello";
  CliResult good = RunCli({"ledger", "verify-receipt", "--receipt", receipt, "--vkey",
                           dir.Sub("keys/hub-log.vkey"), "--payload-file", dir.Sub("payload")});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  json j = json::parse(ReadFileOrDie(receipt));
  j["head"]["tree_size"] = "2";
  std::ofstream(dir.Sub("tampered.json")) << j.dump();
  EXPECT_EQ(RunCli({"ledger", "verify-receipt", "--receipt", dir.Sub("tampered.json"), "--vkey",
                    dir.Sub("keys/hub-log.vkey")})
                .exit_code,
            1);
  CliResult head = RunCli({"--json", "ledger", "--ledger", ledger, "head"});
  ASSERT_EQ(head.exit_code, 0);
  EXPECT_EQ(json::parse(head.output)["tree_size"], "1");

  // Backup while serving; offline verify of the live dir and of the backup.
  ASSERT_EQ(RunCli({"ledger", "--ledger", ledger, "backup", "--dir", dir.Sub("backup")}).exit_code,
            0);
  CliResult v = RunCli({"--json", "ledger", "verify", "--data-dir", dir.path(), "--vkey",
                        dir.Sub("keys/hub-log.vkey")});
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(json::parse(v.output)["events"], 1);
  EXPECT_EQ(RunCli({"ledger", "verify", "--data-dir", dir.Sub("backup"), "--vkey",
                    dir.Sub("keys/hub-log.vkey")})
                .exit_code,
            0);
}

// The console's part of the hub's data (staff accounts, sessions, second
// factors, the agencies' sealed keys) is in `careloop ledger backup` and
// comes back with `careloop ledger restore`: a restored hub's console signs
// in the same staff and signs with the same keys.
TEST(CareloopCli, BackupAndRestoreTakeTheConsolesAccountsAndKeysAlong) {
  TempDir dir;
  std::string address, ledger;
  auto hub = StartCareloopd({"--data-dir", dir.Sub("d"), "--edge-listen", "127.0.0.1:0"}, &address,
                            &ledger);
  ASSERT_TRUE(hub.ok()) << hub.status();
  auto console_of = [](const std::string& output) {
    const size_t at = output.find("console on ");
    if (at == std::string::npos) return std::string();
    const size_t from = at + std::string("console on ").size();
    return output.substr(from, output.find('/', output.find("//", from) + 2) - from);
  };
  const std::string console = console_of((*hub)->output());
  ASSERT_FALSE(console.empty()) << (*hub)->output();
  CliResult seed =
      RunCli({"--json", "demo", "seed", "--console", console, "--data-dir", dir.Sub("d")});
  ASSERT_EQ(seed.exit_code, 0) << seed.output;
  const json logins = json::parse(seed.output)["logins"];
  const json planner = logins[0];
  ASSERT_EQ(planner["user"], "u-planner");

  ASSERT_EQ(RunCli({"ledger", "--ledger", ledger, "backup", "--dir", dir.Sub("backup")}).exit_code,
            0);
  namespace fs = std::filesystem;
  EXPECT_TRUE(fs::is_directory(dir.Sub("backup/edge/staff")));
  EXPECT_TRUE(fs::is_directory(dir.Sub("backup/edge/keys")));
  EXPECT_FALSE(fs::exists(dir.Sub("backup/edge/dev-seed-token")))
      << "the seed token is made anew at each start";
  // The ledger part verifies as before, the edge's directory beside it.
  EXPECT_EQ(RunCli({"ledger", "verify", "--data-dir", dir.Sub("backup"), "--vkey",
                    dir.Sub("d/keys/hub-log.vkey")})
                .exit_code,
            0);
  (*hub)->Signal(SIGTERM);
  ASSERT_EQ(*(*hub)->Wait(absl::Seconds(60)), 0);

  // A data dir whose edge/ is not empty is refused before anything is restored.
  fs::create_directories(dir.Sub("busy/edge"));
  std::ofstream(dir.Sub("busy/edge/other")) << "another edge's file";
  CliResult refused =
      RunCli({"ledger", "restore", "--from", dir.Sub("backup"), "--data-dir", dir.Sub("busy")});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("is not empty"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(dir.Sub("busy/ledger"))) << "nothing restored";

  // Restored into a new data dir (with the hub's keys, kept apart from backups).
  CliResult restored = RunCli(
      {"--json", "ledger", "restore", "--from", dir.Sub("backup"), "--data-dir", dir.Sub("r")});
  ASSERT_EQ(restored.exit_code, 0) << restored.output;
  EXPECT_EQ(json::parse(restored.output)["edge_restored"], true);
  EXPECT_FALSE(fs::exists(dir.Sub("r/ledger/edge"))) << "the ledger holds only the ledger";
  fs::copy(dir.Sub("d/keys"), dir.Sub("r/keys"), fs::copy_options::recursive);
  auto again =
      StartCareloopd({"--data-dir", dir.Sub("r"), "--edge-listen", "127.0.0.1:0"}, &address);
  ASSERT_TRUE(again.ok()) << again.status();
  const std::string console2 = console_of((*again)->output());
  ASSERT_FALSE(console2.empty()) << (*again)->output();
  EXPECT_NE((*again)->output().find("agencies served: 4"), std::string::npos) << (*again)->output();
  // The planner signs in with the same password and sends a referral
  // signed with the restored key, which the restored hub accepts.
  httplib::Client client(console2);
  json login{{"agency", planner["agency"]},
             {"user", planner["user"]},
             {"password", planner["password"]},
             {"code", ""}};
  httplib::Result in = client.Post("/api/login", login.dump(), "application/json");
  ASSERT_TRUE(in);
  ASSERT_EQ(in->status, 200) << in->body;
  const std::string cookie = in->get_header_value("Set-Cookie");
  const std::string csrf = json::parse(in->body)["csrf"];
  json referral{
      {"mrn", "000123"},
      {"service", "food-insecurity"},
      {"reason", "discharge follow-up"},
      {"recipient", "org.foodbank"},
      {"sections",
       json::array({json{{"id", "c"}, {"category", "contact"}, {"text", "call after 5"}}})}};
  httplib::Result sent = client.Post(
      "/api/referrals",
      httplib::Headers{{"Cookie", cookie.substr(0, cookie.find(';'))}, {"X-CSRF-Token", csrf}},
      referral.dump(), "application/json");
  ASSERT_TRUE(sent);
  EXPECT_EQ(sent->status, 200) << sent->body;
}

}  // namespace
}  // namespace careloop::testing
