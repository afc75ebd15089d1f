// The notification service's core (no gRPC): named consumers with durable
// cursors in the ledger, in-order at-least-once delivery of every event that
// concerns an agency, cumulative acks, go-back-N redelivery.
//
// What is delivered: an event is delivered to agency X when its header lists
// X (the ledger's agency index) and its type is one of DeliveredTypes(). The
// rule is this one line so that anyone (a test's oracle, an auditor) can
// recompute it from the ledger alone.
//
// Streams and cursors:
//   consumers/<agency>          ConsumerCreated, one per named consumer
//   delivery/<agency>           DeliveryWithheld: a delivery that withheld a
//                               section consent no longer permits
//   cursor notify/<agency>/<consumer>   the highest seq acknowledged
//
// Memory: per consumer at most `window` sent-but-unacknowledged events
// tracked, one batch of rendered events (at most `window` and ~4 MiB) and
// the one being written; a slow consumer waits on its own stream and never slows the ledger or
// other consumers (one tail of the ledger's headers wakes every subscription).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "careloop/v1/notification.pb.h"
#include "services/referral/renderer.h"
#include "storage/ledger.h"
#include "storage/projection.h"

namespace careloop::notification {

struct ConsumerState;  // per named consumer, in memory (notification_core.cc)

struct NotificationOptions {
  // Nothing acknowledged for this long: everything after the cursor is sent
  // again, its attempt number raised.
  absl::Duration ack_timeout = absl::Seconds(30);
  // Sent but not acknowledged, per consumer: the stream pauses at this many.
  uint32_t window = 256;
  uint32_t max_consumers_per_agency = 16;
  uint32_t max_subscriptions = 4096;
};

// The ledger event types delivered to the agencies their headers list.
const std::set<std::string>& DeliveredTypes();

class NotificationCore {
 public:
  NotificationCore(storage::Ledger* ledger, referral::Renderer* referrals, Clock* clock,
                   NotificationOptions options = {});
  ~NotificationCore();

  // Starts following the ledger (headers only) to wake subscriptions.
  absl::Status Start();
  // Ends every subscription (CANCELLED) and stops following the ledger.
  void Stop();
  // Waits until subscriptions have been woken for every event up to `seq`.
  absl::Status WaitForTail(uint64_t seq, absl::Duration timeout) {
    return runner_->WaitFor(seq, timeout);
  }

  absl::StatusOr<v1::CreateConsumerResponse> CreateConsumer(const v1::CreateConsumerRequest& req,
                                                            absl::string_view agency);
  absl::StatusOr<v1::AckResponse> Ack(const v1::AckRequest& req, absl::string_view agency);
  absl::StatusOr<v1::DeliveryStatusResponse> Status(absl::string_view agency);

  class Subscription {
   public:
    ~Subscription();
    // What to send next, in seq order; empty when nothing came within `wait`.
    // ABORTED once another Subscribe took the consumer over, CANCELLED after
    // Cancel() or Stop().
    absl::StatusOr<std::vector<v1::Notification>> Next(absl::Duration wait);
    // Wakes a pending Next, which returns CANCELLED. Thread-safe.
    void Cancel();
    // False once `seq` is acknowledged: a resend decided before an ack that
    // arrived meanwhile need not go out.
    bool Wanted(uint64_t seq) const;

   private:
    friend class NotificationCore;
    NotificationCore* core_ = nullptr;
    ConsumerState* consumer_ = nullptr;
    uint64_t generation_ = 0;
    bool cancelled_ ABSL_GUARDED_BY(core_->mu_) = false;
    bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu_);
  };
  // The consumer must exist. Replaces the consumer's current subscription.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const v1::SubscribeRequest& req,
                                                          absl::string_view agency);

  static std::string CursorName(absl::string_view agency, absl::string_view consumer);

  // A referral its recipient was sent: acknowledged, it is delivered.
  struct RoutedReferral {
    std::string referral, subject;
    v1::ReferralDelivered delivered;
  };
  struct Item {
    v1::Notification notification;
    std::optional<RoutedReferral> routed;
  };
  // The agency's next notifications after `after`, at most `max`, rendered
  // now (consent checked again); `*last` gets the seq the agency's index was
  // read up to (past events that are not delivered). Also for webhooks.
  absl::StatusOr<std::vector<Item>> Read(absl::string_view agency, absl::string_view consumer,
                                         uint64_t after, uint32_t max, uint64_t* last);
  // False when no event for `agency` after `after` can exist (the tail of
  // the ledger has seen none): lets a poller skip reading the index.
  bool MayHaveAfter(absl::string_view agency, uint64_t after);
  // The newest delivered event for `agency` after `after` (`after` if none).
  absl::StatusOr<uint64_t> Latest(absl::string_view agency, uint64_t after, uint64_t* count);

 private:
  class Wakeups;
  friend class Wakeups;
  absl::StatusOr<ConsumerState*> Load(absl::string_view agency, absl::string_view consumer)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The notification for `agency`, rendered now (consent checked again).
  absl::StatusOr<v1::Notification> Render(const v1::Event& e, absl::string_view agency,
                                          absl::string_view consumer,
                                          std::optional<RoutedReferral>* routed);
  bool HasWork(const ConsumerState& c) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MayHaveAfterLocked(absl::string_view agency, uint64_t after) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Ledger* ledger_;
  referral::Renderer* referrals_;
  Clock* clock_;
  NotificationOptions options_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ConsumerState>> consumers_ ABSL_GUARDED_BY(mu_);
  // The newest delivered event per agency seen since Start().
  std::map<std::string, uint64_t> latest_ ABSL_GUARDED_BY(mu_);
  uint64_t started_at_ ABSL_GUARDED_BY(mu_) = 0;  // ledger size at Start()
  uint64_t tailed_to_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::pair<std::string, uint64_t>> withheld_recorded_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Wakeups> wakeups_;
  std::unique_ptr<storage::ProjectionRunner> runner_;
};

}  // namespace careloop::notification
