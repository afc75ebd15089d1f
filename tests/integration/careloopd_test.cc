// careloopd as a person runs it: health, graceful shutdown on SIGTERM, the
// refusals at start, and the careloop CLI's output and exit codes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
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

}  // namespace
}  // namespace careloop::testing
