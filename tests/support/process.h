// A child process (the real careloopd or careloop binary) for integration and
// crash tests. Readiness is awaited by reading the child's output, never by
// sleeping.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace careloop::testing {

class ChildProcess {
 public:
  // Starts argv[0] with its stdout and stderr on one pipe.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv);
  ~ChildProcess();

  // Reads output lines until one contains `needle`; returns that line.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle, absl::Duration timeout);
  // Sends a signal.
  void Signal(int sig);
  // Waits for the exit; returns the exit code, or 128 + signal.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Everything read so far.
  const std::string& output() const { return output_; }
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  bool ReadSome(absl::Duration timeout);
  pid_t pid_;
  int fd_;
  bool exited_ = false;
  std::string output_;
  size_t consumed_ = 0;
};

// Runs careloopd with `args` (plus --listen 127.0.0.1:0, and --edge-listen off
// unless `args` name one) and waits until it
// serves; `address` receives where agencies connect, `ledger_address` (when
// given; the process must run the ledger) the ledger's own listener.
absl::StatusOr<std::unique_ptr<ChildProcess>> StartCareloopd(const std::vector<std::string>& args,
                                                             std::string* address,
                                                             std::string* ledger_address = nullptr);

// Runs the careloop CLI to completion; returns exit code and output.
struct CliResult {
  int exit_code = -1;
  std::string output;
};
CliResult RunCli(const std::vector<std::string>& args);
// The CLI against `hub`, in dev mode speaking for `as_agency` (if given).
CliResult CliAt(const std::string& hub, std::vector<std::string> args,
                const std::string& as_agency = "");
// a, then b.
std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b);

// One unary call of `method` with an empty request through the generic stub
// (the health proto's generated client is not in Debian's packages), as
// `dev_agency` when one is named; the status, and the response's bytes.
grpc::Status CallEmpty(const std::string& address, const std::string& method,
                       const std::string& dev_agency = "", std::string* bytes = nullptr);

// grpc.health.v1.Health/Check for the whole server: 1 = SERVING,
// 2 = NOT_SERVING; -1 on a failed call.
int HealthStatus(const std::string& address);

}  // namespace careloop::testing
