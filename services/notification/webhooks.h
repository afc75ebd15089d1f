// Webhooks: for agencies without a gRPC client, every event its consumers
// would get is POSTed in order, one at a time, to the agency's endpoint.
//
// Headers (Standard Webhooks): webhook-id (the seq), webhook-timestamp (unix
// seconds), webhook-signature "v1a,<base64>" — an Ed25519 signature over
// "<id>.<timestamp>.<body>" by the hub's webhook key (never its log key).
// The body is the Notification as JSON, the same event as on the stream.
//
// A failure starts a streak (WebhookFailing, durable); the event is retried
// after each step of the schedule. Past `disable_after` the endpoint is
// disabled (WebhookDisabled, which tells the agency on its streams) and the
// events it missed become a dead-letter range; ReplayDeadLetters sends a
// range again. Every state change is an event in webhook/<agency>, so the
// schedule survives restarts (derived from the streak's start and the clock).
// The cursor webhook/<agency> holds what the endpoint acknowledged (2xx).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "careloop/v1/notification.pb.h"
#include "services/directory/agencies.h"
#include "services/notification/notification_core.h"
#include "services/trust/ed25519.h"
#include "services/trust/signed_change.h"

namespace careloop::notification {

// Where outbound requests (webhooks, FHIR subscription notifications) may
// go: in production only to public addresses over https, unless the
// operator's allow-list names the host (an agency's gateway on a private
// network); in dev mode also to loopback and private addresses (http only to
// loopback). Checked when a URL is registered and again, against the address
// actually connected to, at every request (a name that resolves to a private
// address, or changes to one, is refused).
struct OutboundPolicy {
  bool allow_private = false;              // dev mode
  std::vector<std::string> allowed_hosts;  // production: hosts exempt from the check
};

// Whether `ip` (a textual IPv4 or IPv6 address) is a public unicast address:
// not loopback, private (RFC 1918, unique local), link-local (the cloud
// metadata address among them), CGNAT, unspecified, multicast or reserved.
bool IsPublicAddress(absl::string_view ip);

struct HttpResult {
  int status = 0;     // 0: no HTTP answer
  std::string error;  // empty on 2xx
};

// One HTTP POST (libcurl). Real in every test; an interface only so that the
// delivery logic does not depend on curl's headers.
class HttpPoster {
 public:
  virtual ~HttpPoster() = default;
  virtual HttpResult Post(const std::string& url, const std::vector<std::string>& headers,
                          const std::string& body, absl::Duration timeout) = 0;
};
std::unique_ptr<HttpPoster> NewCurlPoster(OutboundPolicy outbound = {});

struct WebhookOptions {
  // Waits after the 1st, 2nd, ... failure of a streak (the last repeats).
  std::vector<absl::Duration> schedule = {absl::Seconds(5), absl::Minutes(5), absl::Minutes(30),
                                          absl::Hours(2),   absl::Hours(5),   absl::Hours(10),
                                          absl::Hours(10)};
  // A streak longer than this disables the endpoint.
  absl::Duration disable_after = absl::Hours(72);
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration max_clock_skew = absl::Minutes(5);
  // How often the background thread looks for due work.
  absl::Duration poll = absl::Milliseconds(200);
  // Where endpoints may be (the poster checks each connection with its own).
  OutboundPolicy outbound;
};

// "v1a,<base64 signature>" over "<id>.<timestamp>.<body>".
std::string SignWebhook(const trust::Ed25519PrivateKey& key, absl::string_view id,
                        int64_t timestamp, absl::string_view body);
// https://, to a public host (or one the allow-list names); in dev mode
// also a private host, and http:// to a loopback host; nothing else.
absl::Status ValidateWebhookUrl(absl::string_view url, const OutboundPolicy& outbound);

class Webhooks {
 public:
  Webhooks(storage::Ledger* ledger, NotificationCore* notes, directory::Agencies* directory,
           Clock* clock, trust::Ed25519PrivateKey key, std::unique_ptr<HttpPoster> http,
           WebhookOptions options = {});
  ~Webhooks();

  // A signed SetWebhook or ReplayDeadLetters.
  absl::StatusOr<v1::SubmitEnvelopeResponse> Submit(absl::string_view envelope);
  absl::StatusOr<v1::ListDeadLettersResponse> ListDeadLetters(const v1::ListDeadLettersRequest& req,
                                                              absl::string_view caller);
  absl::StatusOr<v1::TestWebhookResponse> Test(absl::string_view caller);
  // Unset when the agency never had a webhook.
  absl::StatusOr<std::optional<v1::WebhookStatus>> Status(absl::string_view agency);
  v1::WebhookKeyResponse Key() const;

  // One pass: every enabled endpoint with something due gets at most one
  // POST. Returns how many POSTs were made. Tests call it with a FakeClock.
  absl::StatusOr<int> RunOnce();
  // A background thread that runs RunOnce every `poll`.
  void Start();
  void Stop();

  static std::string Stream(absl::string_view agency);
  static std::string CursorName(absl::string_view agency);

 private:
  struct Replay {
    uint64_t from = 0, to = 0;
    int64_t requested = 0, done = 0;
    uint64_t position = 0;  // sent up to (memory)
  };
  struct State {
    std::string agency, url;
    bool enabled = false, disabled_by_hub = false;
    uint64_t version = 0;  // of webhook/<agency> folded
    uint64_t cursor = 0;
    int64_t failing_since = 0;
    std::string last_error;
    std::vector<v1::DeadLetterRange> dead;
    std::vector<Replay> replays;
    // The current streak's failed attempts and when the next try is due.
    uint32_t attempts = 0;
    absl::Time next_attempt = absl::InfinitePast();
  };
  // Folds webhook/<agency> events after the state's version.
  absl::Status Refresh(State* st);
  absl::StatusOr<State*> Get(absl::string_view agency) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Deliver(State* st, int* posts);
  // Deliver's outcomes: failing past the period (disable, dead-letter what
  // the agency missed); a replay done; the endpoint took the notification;
  // it did not.
  absl::Status Disable(State* st);
  absl::Status FinishReplay(State* st, const Replay& replay);
  absl::Status Delivered(State* st, Replay* replay, const NotificationCore::Item& item);
  absl::Status RecordFailure(State* st, const v1::Notification& n, const std::string& error,
                             absl::Time now);
  absl::StatusOr<HttpResult> PostNotification(const std::string& url, const std::string& id,
                                              const v1::Notification& n);
  absl::Status Append(v1::AppendRequest req);
  absl::StatusOr<v1::AppendRequest> Plan(const trust::VerifiedEnvelope& v, absl::string_view bytes);

  storage::Ledger* ledger_;
  NotificationCore* notes_;
  directory::Agencies* directory_;
  Clock* clock_;
  trust::Ed25519PrivateKey key_;
  std::unique_ptr<HttpPoster> http_;
  WebhookOptions options_;
  trust::RpcPolicy policy_;
  trust::LedgerMessageLog seen_;

  absl::Mutex run_mu_;  // one RunOnce at a time
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<State>> states_ ABSL_GUARDED_BY(mu_);
  uint64_t index_version_ = 0;  // of the "webhooks" stream, under run_mu_
  std::thread thread_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace careloop::notification
