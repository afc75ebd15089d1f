// A full disk, for real: careloopd (a real process) serves its data dir from
// a small tmpfs, and from a loop-mounted ext4 (whose delayed allocation
// reports ENOSPC late), each mounted in a private mount namespace. Clients
// append under load until the disk is full. Then:
//   - careloopd is still running (no abort) and answers every append with
//     UNAVAILABLE naming the full disk, never a dropped connection;
//   - health turns NOT_SERVING, and reads go on answering every acknowledged
//     event;
//   - SIGTERM stops it without a crash;
//   - restarting while the disk is full is refused with exit 1 and the room it
//     needs, without changing anything;
//   - once room is freed it starts, holds every acknowledged event exactly
//     once, every retry of an unanswered key appends at most once, and
//     `careloop ledger verify` passes.
// Mounting needs root (CI runs as root): with CI set, a failed mount fails the
// test; elsewhere it is skipped, saying why.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/ledger/remote_ledger.h"
#include "services/trust/head_signer.h"
#include "storage/verify.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDiskBytes = 320ull << 20;  // room to reopen: the data, its WAL again, 64 MiB
constexpr uint64_t kRoomLeft = 6ull << 20;     // what the load may fill
constexpr int kClients = 6;
constexpr size_t kPayload = 24 << 10;

// Runs a command to completion; its exit code, or -1.
int Run(const std::vector<std::string>& argv, std::string* output = nullptr) {
  auto child = ChildProcess::Start(argv);
  if (!child.ok()) return -1;
  absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(60));
  if (output != nullptr) *output = (*child)->output();
  return code.ok() ? *code : -1;
}

// A file system of kDiskBytes mounted at `dir`, seen only by this process
// and its children. Empty on success, else why not.
std::string MountPrivately(const std::string& kind, const std::string& dir,
                           const std::string& image) {
  static const std::string unshared = [] {
    if (::unshare(CLONE_NEWNS) != 0) return absl::StrCat("unshare(CLONE_NEWNS): ", errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return absl::StrCat("making / private: ", errno);
    return std::string();
  }();
  if (!unshared.empty()) return unshared;
  fs::create_directories(dir);
  if (kind == "tmpfs") {
    const std::string opts = absl::StrCat("size=", kDiskBytes);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
      return absl::StrCat("mounting tmpfs: ", errno);
    return "";
  }
  std::string out;
  if (Run({"/usr/bin/truncate", "-s", std::to_string(kDiskBytes), image}) != 0)
    return "truncate failed";
  if (Run({"/sbin/mkfs.ext4", "-q", "-F", "-m", "0", image}, &out) != 0)
    return "mkfs.ext4 failed: " + out;
  if (Run({"/bin/mount", "-o", "loop", image, dir}, &out) != 0)
    return "mount -o loop failed: " + out;
  return "";
}

uint64_t Available(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

// A file that takes all but `leave` bytes of the disk holding `dir`.
bool FillAllBut(const std::string& path, uint64_t leave) {
  const uint64_t avail = Available(fs::path(path).parent_path().string());
  if (avail <= leave) return true;
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok =
      ::posix_fallocate(fd, 0, static_cast<off_t>(avail - leave)) == 0 && ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

struct Load {
  absl::Mutex mu;
  std::map<std::string, uint64_t> acked;  // key -> first seq
  std::map<std::string, v1::AppendRequest> unanswered;
  std::vector<std::string> problems;
};

v1::AppendRequest Request(const std::string& key) {
  v1::AppendRequest r;
  for (int k = 0; k < 2; ++k) {
    v1::EventInput* e = r.add_events();
    e->set_stream(absl::StrCat("full/", key.substr(0, key.find('-'))));
    e->set_type("Load");
    e->set_payload(absl::StrCat(key, "#", k, std::string(kPayload, 'x')));
  }
  r.set_idempotency_key(key);
  return r;
}

// Appends from kClients threads until each has been refused once.
void AppendUntilFull(storage::Ledger* ledger, Load* load) {
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      for (int n = 0; n < 100000; ++n) {
        const std::string key = absl::StrCat("t", t, "-", n);
        v1::AppendRequest r = Request(key);
        absl::StatusOr<v1::Commit> c = ledger->Append(r);
        absl::MutexLock lock(&load->mu);
        if (c.ok()) {
          load->acked[key] = c->first_seq();
          continue;
        }
        load->unanswered[key] = r;
        const std::string why(c.status().message());
        if (c.status().code() != absl::StatusCode::kUnavailable ||
            !(absl::StrContains(why, "no space left on device") ||
              absl::StrContains(why, "writer stopped"))) {
          load->problems.push_back(absl::StrCat(key, ": ", c.status().ToString()));
        }
        return;
      }
      absl::MutexLock lock(&load->mu);
      load->problems.push_back("the disk never filled");
    });
  }
  for (auto& c : clients) c.join();
}

// Every acknowledged key's events exactly once, at the seq it was answered
// with; every other key's at most once. Keys are read from the payloads.
void ExpectEachOnce(storage::Ledger* ledger, const Load& load) {
  std::map<std::string, std::vector<uint64_t>> seen;  // key -> seqs of its first event
  for (uint64_t from = 1;;) {
    v1::ReadRequest r;
    r.set_from_seq(from);
    r.set_limit(100);  // 24 KiB payloads: a page under the 4 MiB message limit
    r.set_include_payloads(true);
    absl::StatusOr<v1::ReadResponse> page = ledger->Read(r);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->events_size() == 0) break;
    for (const v1::Event& e : page->events()) {
      const std::string& p = e.payload();
      if (absl::StrContains(p.substr(0, 40), "#0")) {
        seen[p.substr(0, p.find('#'))].push_back(e.header().seq());
      }
    }
    from = page->events().rbegin()->header().seq() + 1;
  }
  for (const auto& [key, seq] : load.acked) {
    ASSERT_EQ(seen[key].size(), 1u) << key << " acknowledged, found " << seen[key].size();
    EXPECT_EQ(seen[key][0], seq) << key;
  }
  for (const auto& [key, seqs] : seen) EXPECT_LE(seqs.size(), 1u) << key;
}

void RunDiskFull(const std::string& kind) {
  TempDir tmp;
  const std::string mnt = tmp.Sub("mnt");
  const std::string why = MountPrivately(kind, mnt, tmp.Sub("disk.img"));
  if (!why.empty()) {
    if (std::getenv("CI") != nullptr) FAIL() << "cannot mount " << kind << ": " << why;
    GTEST_SKIP() << "cannot mount " << kind << " (needs root): " << why;
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string data = mnt + "/data";
  const std::vector<std::string> args = {"--services=ledger", "--data-dir", data, "--hub-name",
                                         "careloop.full"};
  Load load;
  {
    std::string address, ledger_address;
    auto hub = StartCareloopd(args, &address, &ledger_address);
    ASSERT_TRUE(hub.ok()) << hub.status();
    ASSERT_TRUE(FillAllBut(mnt + "/ballast", kRoomLeft));
    ledger::RemoteLedger ledger(
        grpc::CreateChannel(ledger_address, grpc::InsecureChannelCredentials()), absl::Seconds(30));
    AppendUntilFull(&ledger, &load);
    EXPECT_TRUE(load.problems.empty()) << load.problems.size() << " problems, first "
                                       << (load.problems.empty() ? "" : load.problems[0]);
    EXPECT_GT(load.acked.size(), 10u);
    std::printf("%s: %zu appends acknowledged before the disk filled, %zu refused\n", kind.c_str(),
                load.acked.size(), load.unanswered.size());
    // Still running, still answering: NOT_SERVING, refusals, reads.
    EXPECT_FALSE((*hub)->Wait(absl::Milliseconds(100)).ok()) << "careloopd exited";
    int health = -1;
    for (absl::Time until = absl::Now() + absl::Seconds(15); absl::Now() < until;) {
      health = HealthStatus(address);
      if (health == 2) break;
      absl::SleepFor(absl::Milliseconds(100));  // the health watch runs each second
    }
    EXPECT_EQ(health, 2) << "health is not NOT_SERVING";
    absl::StatusOr<v1::Commit> refused = ledger.Append(Request("after-full"));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
    ExpectEachOnce(&ledger, load);
    (*hub)->Signal(SIGTERM);
    absl::StatusOr<int> code = (*hub)->Wait(absl::Seconds(60));
    ASSERT_TRUE(code.ok());
    EXPECT_LT(*code, 128) << "careloopd died of a signal:\n" << (*hub)->output();
  }
  // Restarting on the full disk: refused, with the room it needs. (Closing
  // may have given back the WAL's preallocated tail: fill that too.)
  ASSERT_TRUE(FillAllBut(mnt + "/ballast2", 1 << 20));
  {
    std::vector<std::string> argv = {CARELOOPD_BINARY, "--listen", "127.0.0.1:0", "--edge-listen",
                                     "off"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string output;
    EXPECT_EQ(Run(argv, &output), 1) << output;
    EXPECT_TRUE(absl::StrContains(output, "room") || absl::StrContains(output, "space")) << output;
  }
  // Room freed: every acknowledged event once; retries append at most once.
  fs::remove(mnt + "/ballast");
  fs::remove(mnt + "/ballast2");
  {
    std::string address, ledger_address;
    auto hub = StartCareloopd(args, &address, &ledger_address);
    ASSERT_TRUE(hub.ok()) << hub.status();
    ledger::RemoteLedger ledger(
        grpc::CreateChannel(ledger_address, grpc::InsecureChannelCredentials()), absl::Seconds(30));
    ExpectEachOnce(&ledger, load);
    for (const auto& [key, request] : load.unanswered) {
      absl::StatusOr<v1::Commit> c = ledger.Append(request);
      EXPECT_TRUE(c.ok()) << key << ": " << c.status();
    }
    ExpectEachOnce(&ledger, load);
    EXPECT_EQ(HealthStatus(address), 1);
    (*hub)->Signal(SIGTERM);
    absl::StatusOr<int> code = (*hub)->Wait(absl::Seconds(60));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << (*hub)->output();
  }
  auto key = trust::Ed25519NoteVerifier::FromFile(data + "/keys/hub-log.vkey");
  ASSERT_TRUE(key.ok()) << key.status();
  auto report = storage::VerifyLedgerDir(data + "/ledger", key->get(), nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok) << "seq " << report->first_bad_seq << ": " << report->problem;
}

TEST(DiskFull, OnTmpfsTheHubFailsStopAndLosesNothing) { RunDiskFull("tmpfs"); }
TEST(DiskFull, OnLoopExt4TheHubFailsStopAndLosesNothing) { RunDiskFull("ext4"); }

}  // namespace
}  // namespace careloop::testing
