// careloopd: the hub's one binary. Wiring only; see hub.cc.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/protobuf_log.h"
#include "base/runtime.h"
#include "services/careloopd/hub.h"

int main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  // Block the shutdown signals in every thread; one sigwait below takes them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  bool exit_now = false;
  std::string text;
  absl::StatusOr<careloop::hub::HubConfig> config =
      careloop::hub::ParseHubConfig(argc, argv, &exit_now, &text);
  if (!config.ok()) {
    std::cerr << "careloopd: " << config.status().message() << "\n";
    return 2;
  }
  if (exit_now) {
    std::cout << text;
    return 0;
  }
  careloop::log::Level level = careloop::log::Level::kInfo;
  careloop::log::Format format = careloop::log::Format::kLogfmt;
  careloop::log::ParseLevel(config->log_level, &level);
  careloop::log::ParseFormat(config->log_format, &format);
  careloop::log::Init(level, format);
  careloop::log::RouteProtobufLogsToDebug();

  // One thread takes the shutdown signals for the process's life. Before
  // the hub serves, a signal ends the process at once (a start that waits,
  // on a projection or a slow disk, never ignores SIGTERM; nothing is
  // acknowledged yet, and an open ledger is crash-safe).
  absl::Mutex mu;
  int signalled = 0;
  bool serving = false;
  std::thread([&signals, &mu, &signalled, &serving] {
    int sig = 0;
    sigwait(&signals, &sig);
    absl::MutexLock lock(&mu);
    signalled = sig;
    if (!serving) {
      std::cerr << "careloopd: signal " << sig << " before serving; exiting\n";
      std::_Exit(128 + sig);
    }
  }).detach();

  absl::StatusOr<std::unique_ptr<careloop::hub::Hub>> hub =
      careloop::hub::Hub::Start(*config, std::cout);
  if (!hub.ok()) {
    std::cerr << "careloopd: refusing to start: " << hub.status().message() << "\n";
    // 3: the data is damaged or behind what it acknowledged (docs/OPERATIONS.md).
    return absl::IsDataLoss(hub.status()) ? 3 : 1;
  }
  std::cout << "careloopd: serving on " << (*hub)->address() << " (data dir " << config->data_dir
            << "); stop with Ctrl-C or SIGTERM" << std::endl;

  int sig = 0;
  {
    absl::MutexLock lock(&mu);
    serving = true;
    mu.Await(absl::Condition(
        +[](int* s) { return *s != 0; }, &signalled));
    sig = signalled;
  }
  careloop::log::Info("careloopd.signal", {{"signal", sig}});
  (*hub)->Shutdown();
  return 0;
}
