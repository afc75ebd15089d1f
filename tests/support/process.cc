#include "tests/support/process.h"

#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace careloop::testing {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv) {
  // Everything the child needs is made before fork(): between fork and exec
  // a child of a threaded parent may only make async-signal-safe calls. An
  // allocation there can find the allocator's lock held by a thread that did
  // not survive the fork, and then the child hangs before it ever execs.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string exec_failed = absl::StrCat("exec ", argv.empty() ? "" : argv[0], " failed\n");
  sigset_t none;
  sigemptyset(&none);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    // The parent may block signals (careloopd does); the child starts clean.
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(args[0], args.data());
    ssize_t ignored = ::write(2, exec_failed.data(), exec_failed.size());
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, fds[0]));
}

ChildProcess::~ChildProcess() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  ::close(fd_);
}

bool ChildProcess::ReadSome(absl::Duration timeout) {
  pollfd p{fd_, POLLIN, 0};
  int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  if (::poll(&p, 1, ms < 0 ? 0 : ms) <= 0) return false;
  char buf[4096];
  ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n <= 0) return false;
  output_.append(buf, static_cast<size_t>(n));
  return true;
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(const std::string& needle,
                                                      absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    size_t nl;
    while ((nl = output_.find('\n', consumed_)) != std::string::npos) {
      std::string line = output_.substr(consumed_, nl - consumed_);
      consumed_ = nl + 1;
      if (line.find(needle) != std::string::npos) return line;
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    if (!ReadSome(left)) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        while (ReadSome(absl::ZeroDuration())) {
        }
        return absl::FailedPreconditionError(
            absl::StrCat("process exited before printing '", needle, "'; output:\n", output_));
      }
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no line with '", needle, "'; output:\n", output_));
}

void ChildProcess::Signal(int sig) {
  if (!exited_) ::kill(pid_, sig);
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      while (ReadSome(absl::ZeroDuration())) {
      }
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("process did not exit");
    // Drain output while waiting (the pipe must not fill); also the wait.
    ReadSome(absl::Milliseconds(20));
  }
}

absl::StatusOr<std::unique_ptr<ChildProcess>> StartCareloopd(const std::vector<std::string>& args,
                                                             std::string* address,
                                                             std::string* ledger_address) {
  std::vector<std::string> argv = {CARELOOPD_BINARY, "--listen", "127.0.0.1:0"};
  // The console's dev default is a fixed port: tests that want it ask for a
  // free one (--edge-listen 127.0.0.1:0).
  if (std::find(args.begin(), args.end(), "--edge-listen") == args.end()) {
    argv.insert(argv.end(), {"--edge-listen", "off"});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::Start(argv);
  if (!child.ok()) return child.status();
  if (ledger_address != nullptr) {
    absl::StatusOr<std::string> line =
        (*child)->WaitForLine("careloopd: ledger on ", absl::Seconds(60));
    if (!line.ok()) return line.status();
    std::string rest = line->substr(line->find("ledger on ") + 10);
    *ledger_address = rest.substr(0, rest.find(' '));
  }
  absl::StatusOr<std::string> line =
      (*child)->WaitForLine("careloopd: serving on ", absl::Seconds(60));
  if (!line.ok()) return line.status();
  std::string rest = line->substr(line->find("serving on ") + 11);
  *address = rest.substr(0, rest.find(' '));
  return child;
}

CliResult RunCli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CARELOOP_CLI_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  CliResult result;
  auto child = ChildProcess::Start(argv);
  if (!child.ok()) return result;
  absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(120));
  result.exit_code = code.ok() ? *code : -1;
  result.output = (*child)->output();
  return result;
}

CliResult CliAt(const std::string& hub, std::vector<std::string> args,
                const std::string& as_agency) {
  if (!as_agency.empty()) args.insert(args.begin(), {"--dev-agency", as_agency});
  args.insert(args.begin(), {"--hub", hub});
  return RunCli(args);
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

grpc::Status CallEmpty(const std::string& address, const std::string& method,
                       const std::string& dev_agency, std::string* bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!dev_agency.empty()) ctx.AddMetadata("x-careloop-dev-agency", dev_agency);
  grpc::CompletionQueue cq;
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, method, request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  if (!cq.Next(&tag, &ok) || !ok) return grpc::Status(grpc::StatusCode::UNKNOWN, "no answer");
  if (bytes != nullptr && status.ok()) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    for (const auto& s : slices) bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

int HealthStatus(const std::string& address) {
  std::string bytes;
  if (!CallEmpty(address, "/grpc.health.v1.Health/Check", "", &bytes).ok()) return -1;
  // HealthCheckResponse { status = 1 } encodes as 08 01.
  if (bytes.size() == 2 && bytes[0] == 0x08) return bytes[1];
  return bytes.empty() ? 0 : -1;
}

}  // namespace careloop::testing
