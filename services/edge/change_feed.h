// Live updates for the consoles: one NotificationService consumer per
// agency the edge serves ("edge-console"), read on a thread of its own,
// acknowledged as it is read (the agency's edge has it: delivered), and
// reduced to "the agency's latest change". A console asks for that number
// and gets it at once; it never waits on the server, so open consoles hold
// none of the HTTP server's worker threads however many there are.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/edge/hub_client.h"

namespace careloop::edge {

inline constexpr char kConsoleConsumer[] = "edge-console";

class ChangeFeed {
 public:
  explicit ChangeFeed(HubClient* hub) : hub_(hub) {}
  ~ChangeFeed() { Stop(); }
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // Follows `agency` (once; later calls change nothing).
  void Follow(const std::string& agency);
  // The seq of the newest notification the agency has had (0: none yet).
  uint64_t Latest(const std::string& agency) const;
  // Waits until the agency's latest is past `after` or `wait` passes; for
  // tests and tools, never for an HTTP worker.
  uint64_t WaitPast(const std::string& agency, uint64_t after, absl::Duration wait) const;
  void Stop();

 private:
  void Run(const std::string& agency);
  // One subscription's life: returns when it ends (error, stop).
  absl::Status Pump(const std::string& agency);

  HubClient* hub_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, uint64_t> latest_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ChangeStream*> streams_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace careloop::edge
