#include "services/notification/notification_core.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::notification {

// One named consumer. Everything but the durable cursor is this process's
// memory: after a restart a consumer resumes after its cursor.
struct ConsumerState {
  std::string agency, name;
  uint64_t cursor = 0;                    // acknowledged up to (durable)
  uint64_t position = 0;                  // the next read starts after this seq
  uint64_t delivered_max = 0;             // the highest seq sent on a stream
  std::map<uint64_t, uint32_t> attempts;  // seq > cursor -> times sent
  // Referrals received, not yet acknowledged.
  std::map<uint64_t, NotificationCore::RoutedReferral> routed;
  absl::Time last_progress;  // the last ack, or the first send after it
  uint64_t generation = 0;   // the current subscription's; 0: none
  int64_t last_ack = 0;
};

namespace {

using names::event::kConsumerCreated;

std::string ConsumersStream(absl::string_view agency) { return names::stream::Consumers(agency); }
std::string Key(absl::string_view agency, absl::string_view consumer) {
  return absl::StrCat(agency, "/", consumer);
}

absl::Status ValidateConsumer(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("a consumer name has 1 to 64 characters of [A-Za-z0-9._:@-]");
  }
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' || ch == '@' ||
                    ch == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "a consumer name has 1 to 64 characters of [A-Za-z0-9._:@-]");
    }
  }
  return absl::OkStatus();
}

const std::map<std::string, std::string>& FixedKinds() {
  static const auto* kinds = new std::map<std::string, std::string>{
      {names::event::kStatusChanged, "referral.status"},
      {names::event::kReferralViewed, "referral.viewed"},
      {names::event::kReferralDelivered, "referral.delivered"},
      {names::event::kReferralUnassigned, "referral.unassigned"},
      {names::event::kReferralDeadlineWarning, "referral.deadline_warning"},
      {names::event::kThreadMessage, "referral.message"},
      {names::event::kConsentRevocationNotice, "consent.revoked"},
      {names::event::kBreakGlassInvoked, "breakglass.invoked"},
      {names::event::kReviewBreakGlass, "breakglass.reviewed"},
      {names::event::kRegisterAgency, "directory.changed"},
      {names::event::kUpdateAgencyProfile, "directory.changed"},
      {names::event::kSetAgencyStatus, "directory.changed"},
      {names::event::kAddAgencyKey, "directory.changed"},
      {names::event::kRevokeAgencyKey, "directory.changed"},
      {names::event::kSetActor, "directory.changed"},
      {names::event::kRemoveActor, "directory.changed"},
      {names::event::kReportCapacity, "directory.changed"},
      {names::event::kWebhookDisabled, "delivery.disabled"},
  };
  return *kinds;
}

// Events whose payload is the sender's signed envelope, exactly as received.
bool CarriesEnvelope(absl::string_view type) {
  return type == names::event::kStatusChanged || type == names::event::kThreadMessage ||
         type == names::event::kReviewBreakGlass ||
         FixedKinds().at(std::string(type)) == "directory.changed";
}

}  // namespace

const std::set<std::string>& DeliveredTypes() {
  static const auto* types = [] {
    auto* t = new std::set<std::string>{names::event::kReferralRouted};
    for (const auto& [type, kind] : FixedKinds()) t->insert(type);
    return t;
  }();
  return *types;
}

std::string NotificationCore::CursorName(absl::string_view agency, absl::string_view consumer) {
  return names::stream::Notify(agency, consumer);
}

// Follows the ledger's headers and records, per agency, the newest event
// delivered to it: that is what wakes its subscriptions (absl::Mutex wakes
// only the waiters whose condition became true).
class NotificationCore::Wakeups final : public storage::Projection {
 public:
  Wakeups(NotificationCore* core, uint64_t from) : core_(core), from_(from) {}
  absl::StatusOr<uint64_t> AppliedSeq() override { return from_; }
  absl::Status Apply(const std::vector<v1::Event>& events) override {
    absl::MutexLock lock(&core_->mu_);
    for (const v1::Event& e : events) {
      if (!DeliveredTypes().contains(e.header().type())) continue;
      for (const std::string& a : e.header().agencies()) core_->latest_[a] = e.header().seq();
    }
    if (!events.empty()) core_->tailed_to_ = events.back().header().seq();
    return absl::OkStatus();
  }

 private:
  NotificationCore* core_;
  uint64_t from_;
};

NotificationCore::NotificationCore(storage::Ledger* ledger, referral::Renderer* referrals,
                                   Clock* clock, NotificationOptions options)
    : ledger_(ledger), referrals_(referrals), clock_(clock), options_(options) {}

NotificationCore::~NotificationCore() { Stop(); }

absl::Status NotificationCore::Start() {
  ASSIGN_OR_RETURN(v1::SignedHead head, ledger_->Head(0));
  {
    absl::MutexLock lock(&mu_);
    started_at_ = head.tree_size();
    tailed_to_ = head.tree_size();
  }
  wakeups_ = std::make_unique<Wakeups>(this, head.tree_size());
  storage::ProjectionRunner::Options o;
  o.include_payloads = false;
  runner_ = std::make_unique<storage::ProjectionRunner>(ledger_, wakeups_.get(), o);
  return runner_->Start();
}

void NotificationCore::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (runner_) runner_->Stop();
}

absl::StatusOr<v1::CreateConsumerResponse> NotificationCore::CreateConsumer(
    const v1::CreateConsumerRequest& req, absl::string_view agency) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  RETURN_IF_ERROR(ValidateConsumer(req.consumer()));
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> existing,
                     storage::ReadWholeStream(ledger_, ConsumersStream(agency)));
    for (const v1::Event& e : existing) {
      v1::CreateConsumerRequest c;
      if (!c.ParseFromString(e.payload())) {
        return absl::DataLossError(
            absl::StrCat("event ", e.header().seq(), " (ConsumerCreated) does not parse"));
      }
      if (c.consumer() != req.consumer()) continue;
      ASSIGN_OR_RETURN(std::optional<uint64_t> cursor,
                       ledger_->GetCursor(CursorName(agency, req.consumer())));
      v1::CreateConsumerResponse resp;
      resp.set_consumer(req.consumer());
      resp.set_cursor(cursor.value_or(0));
      resp.set_created(false);
      return resp;
    }
    if (existing.size() >= options_.max_consumers_per_agency) {
      return absl::ResourceExhaustedError(absl::StrCat("agency ", agency, " has ", existing.size(),
                                                       " consumers, the most allowed"));
    }
    ASSIGN_OR_RETURN(v1::SignedHead head, ledger_->Head(0));
    if (req.start_after_seq() > head.tree_size()) {
      return absl::InvalidArgumentError(absl::StrCat("start_after_seq ", req.start_after_seq(),
                                                     " is past the ledger's end (",
                                                     head.tree_size(), ")"));
    }
    v1::AppendRequest append;
    trust::AddEvent(&append, ConsumersStream(agency), kConsumerCreated, {},
                    req.SerializeAsString());
    v1::Precondition* p = append.add_preconditions();
    p->set_stream(ConsumersStream(agency));
    p->set_expected_version(existing.size());
    if (req.start_after_seq() > 0) {
      v1::CursorUpdate* u = append.add_cursor_updates();
      u->set_name(CursorName(agency, req.consumer()));
      u->set_position(req.start_after_seq());
      u->set_expected_position(0);
    }
    absl::StatusOr<v1::Commit> c = ledger_->Append(std::move(append));
    if (absl::IsFailedPrecondition(c.status())) continue;  // another creation raced
    RETURN_IF_ERROR(c.status());
    log::Info("notification.consumer_created",
              {{"agency", std::string(agency)}, {"consumer", req.consumer()}});
    v1::CreateConsumerResponse resp;
    resp.set_consumer(req.consumer());
    resp.set_cursor(req.start_after_seq());
    resp.set_created(true);
    return resp;
  }
  return absl::AbortedError("consumers of this agency kept changing; try again");
}

absl::StatusOr<ConsumerState*> NotificationCore::Load(absl::string_view agency,
                                                      absl::string_view consumer) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  RETURN_IF_ERROR(ValidateConsumer(consumer));
  const std::string key = Key(agency, consumer);
  {
    absl::MutexLock lock(&mu_);
    auto it = consumers_.find(key);
    if (it != consumers_.end()) return it->second.get();
  }
  ASSIGN_OR_RETURN(std::vector<v1::Event> existing,
                   storage::ReadWholeStream(ledger_, ConsumersStream(agency)));
  bool found = false;
  for (const v1::Event& e : existing) {
    v1::CreateConsumerRequest c;
    found |= c.ParseFromString(e.payload()) && c.consumer() == consumer;
  }
  if (!found) {
    return absl::NotFoundError(absl::StrCat("agency ", agency, " has no consumer ", consumer,
                                            "; create it first (CreateConsumer)"));
  }
  ASSIGN_OR_RETURN(std::optional<uint64_t> cursor,
                   ledger_->GetCursor(CursorName(agency, consumer)));
  absl::MutexLock lock(&mu_);
  auto& slot = consumers_[key];
  if (!slot) {
    slot = std::make_unique<ConsumerState>();
    slot->agency = std::string(agency);
    slot->name = std::string(consumer);
    slot->cursor = slot->position = slot->delivered_max = cursor.value_or(0);
    slot->last_progress = clock_->Now();
  }
  return slot.get();
}

bool NotificationCore::MayHaveAfterLocked(absl::string_view agency, uint64_t after) const {
  if (after < started_at_) return true;  // history before this process started
  auto it = latest_.find(std::string(agency));
  return it != latest_.end() && it->second > after;
}

bool NotificationCore::MayHaveAfter(absl::string_view agency, uint64_t after) {
  absl::MutexLock lock(&mu_);
  return MayHaveAfterLocked(agency, after);
}

bool NotificationCore::HasWork(const ConsumerState& c) const {
  return MayHaveAfterLocked(c.agency, c.position);
}

namespace {
// Sent and not yet acknowledged, up to the read position.
uint32_t InFlight(const ConsumerState& c) {
  uint32_t n = 0;
  for (auto it = c.attempts.begin(); it != c.attempts.end() && it->first <= c.position; ++it) ++n;
  return n;
}
}  // namespace

bool NotificationCore::Subscription::Ready() const {
  const ConsumerState& c = *consumer_;
  if (cancelled_ || core_->stopped_ || c.generation != generation_) return true;
  return InFlight(c) < core_->options_.window && core_->HasWork(c);
}

absl::StatusOr<std::unique_ptr<NotificationCore::Subscription>> NotificationCore::Subscribe(
    const v1::SubscribeRequest& req, absl::string_view agency) {
  ASSIGN_OR_RETURN(ConsumerState * c, Load(agency, req.consumer()));
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::UnavailableError("the notification service is stopping");
  if (req.from_seq() > c->cursor + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("from_seq ", req.from_seq(), " is past consumer ", c->name, "'s cursor + 1 (",
                     c->cursor + 1, "); to skip events, acknowledge them"));
  }
  if (subscriptions_ >= options_.max_subscriptions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the hub serves ", subscriptions_, " subscriptions, the most allowed"));
  }
  auto sub = std::unique_ptr<Subscription>(new Subscription());
  sub->core_ = this;
  sub->consumer_ = c;
  sub->generation_ = ++next_generation_;
  // The newest subscription wins; it resumes after the last ack.
  c->generation = sub->generation_;
  c->position = req.from_seq() > 0 ? req.from_seq() - 1 : c->cursor;
  c->last_progress = clock_->Now();
  ++subscriptions_;
  log::Info("notification.subscribed", {{"agency", c->agency}, {"consumer", c->name}});
  return sub;
}

NotificationCore::Subscription::~Subscription() {
  if (core_ == nullptr) return;
  absl::MutexLock lock(&core_->mu_);
  --core_->subscriptions_;
  if (consumer_->generation == generation_) consumer_->generation = 0;
}

bool NotificationCore::Subscription::Wanted(uint64_t seq) const {
  absl::MutexLock lock(&core_->mu_);
  return seq > consumer_->cursor;
}

void NotificationCore::Subscription::Cancel() {
  absl::MutexLock lock(&core_->mu_);
  cancelled_ = true;
}

absl::StatusOr<std::vector<v1::Notification>> NotificationCore::Subscription::Next(
    absl::Duration wait) {
  ConsumerState* c = consumer_;
  uint64_t after = 0;
  uint32_t room = 0;
  {
    absl::MutexLock lock(&core_->mu_);
    const absl::Time now = core_->clock_->Now();
    if (c->generation == generation_ && c->delivered_max > c->cursor &&
        now - c->last_progress >= core_->options_.ack_timeout) {
      // Go-back-N: nothing acknowledged in time, so everything after the
      // cursor goes again.
      log::Info("notification.redeliver", {{"agency", c->agency},
                                           {"consumer", c->name},
                                           {"from_seq", c->cursor + 1},
                                           {"to_seq", c->delivered_max}});
      c->position = c->cursor;
      c->last_progress = now;
    }
    if (c->delivered_max > c->cursor) {
      // Wake in time for the next go-back-N (the clock may be a test's).
      wait = std::min(wait, std::max(absl::ZeroDuration(),
                                     c->last_progress + core_->options_.ack_timeout - now));
    }
    core_->mu_.AwaitWithTimeout(absl::Condition(this, &Subscription::Ready), wait);
    if (cancelled_ || core_->stopped_)
      return absl::CancelledError("the subscription was cancelled");
    if (c->generation != generation_) {
      return absl::AbortedError(
          absl::StrCat("consumer ", c->name, " was taken over by a newer subscription"));
    }
    const uint32_t in_flight = InFlight(*c);
    if (in_flight >= core_->options_.window || !core_->HasWork(*c))
      return std::vector<v1::Notification>();
    after = c->position;
    room = core_->options_.window - in_flight;
  }

  uint64_t last = after;
  ASSIGN_OR_RETURN(std::vector<Item> items, core_->Read(c->agency, c->name, after, room, &last));

  absl::MutexLock lock(&core_->mu_);
  if (c->generation != generation_) {
    return absl::AbortedError(
        absl::StrCat("consumer ", c->name, " was taken over by a newer subscription"));
  }
  if (c->position != after) return std::vector<v1::Notification>();  // went back meanwhile
  c->position = std::max(c->position, last);
  const absl::Time now = core_->clock_->Now();
  if (!items.empty() && c->delivered_max <= c->cursor) c->last_progress = now;
  std::vector<v1::Notification> out;
  for (Item& item : items) {
    v1::Notification& n = item.notification;
    n.set_attempt(++c->attempts[n.seq()]);
    c->delivered_max = std::max(c->delivered_max, n.seq());
    if (item.routed) c->routed[n.seq()] = *std::move(item.routed);
    out.push_back(std::move(n));
  }
  return out;
}

absl::StatusOr<std::vector<NotificationCore::Item>> NotificationCore::Read(
    absl::string_view agency, absl::string_view consumer, uint64_t after, uint32_t max,
    uint64_t* last) {
  // Read the agency's index until there is something to send (most of its
  // entries are bookkeeping that is not delivered) or it is caught up.
  std::vector<Item> out;
  *last = after;
  size_t bytes = 0;  // a batch holds at most ~4 MiB of rendered events (and at least one)
  constexpr size_t kMaxBatchBytes = 4 << 20;
  while (true) {
    v1::ReadIndexRequest r;
    r.set_agency(std::string(agency));
    r.set_after_seq(*last);
    r.set_limit(256);
    r.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
    bool full = false;
    for (const v1::Event& e : page.events()) {
      if (out.size() >= max || bytes >= kMaxBatchBytes) {
        full = true;
        break;
      }
      *last = e.header().seq();
      if (!DeliveredTypes().contains(e.header().type())) continue;
      Item item;
      absl::StatusOr<v1::Notification> n = Render(e, agency, consumer, &item.routed);
      if (!n.ok()) {
        // Never a poison event: the agency still learns that something
        // happened (and its seq, to ask for it), without the content.
        log::Error("notification.render_failed", {{"agency", std::string(agency)},
                                                  {"seq", e.header().seq()},
                                                  {"cause", std::string(n.status().message())}});
        v1::Notification bare;
        bare.set_seq(e.header().seq());
        bare.set_type(e.header().type());
        bare.set_stream(e.header().stream());
        bare.set_at_unix_nanos(e.header().commit_time_unix_nanos());
        bare.set_header_bytes(e.header_bytes());
        n = std::move(bare);
        item.routed.reset();
      }
      if (item.routed) item.routed->subject = e.header().subject();
      item.notification = *std::move(n);
      bytes += item.notification.ByteSizeLong();
      out.push_back(std::move(item));
    }
    if (full) break;
    if (!page.more()) {
      *last = std::max(*last, page.tree_size());
      break;
    }
    if (!out.empty()) break;
  }
  return out;
}

absl::StatusOr<uint64_t> NotificationCore::Latest(absl::string_view agency, uint64_t after,
                                                  uint64_t* count) {
  uint64_t latest = after, n = 0;
  while (n < 100'000) {
    v1::ReadIndexRequest r;
    r.set_agency(std::string(agency));
    r.set_after_seq(after);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
    for (const v1::Event& ev : page.events()) {
      after = ev.header().seq();
      if (!DeliveredTypes().contains(ev.header().type())) continue;
      ++n;
      latest = ev.header().seq();
    }
    if (!page.more()) break;
  }
  if (count != nullptr) *count = n;
  return latest;
}

absl::StatusOr<v1::Notification> NotificationCore::Render(const v1::Event& e,
                                                          absl::string_view agency,
                                                          absl::string_view consumer,
                                                          std::optional<RoutedReferral>* routed) {
  const v1::EventHeader& h = e.header();
  v1::Notification n;
  n.set_seq(h.seq());
  n.set_type(h.type());
  n.set_stream(h.stream());
  n.set_at_unix_nanos(h.commit_time_unix_nanos());
  n.set_header_bytes(e.header_bytes());
  const std::string& type = h.type();
  const std::string referral = names::stream::ReferralKeyOf(h.stream());
  n.set_referral(referral);

  std::vector<v1::WithheldSection> withheld_now;
  if (type == names::event::kReferralRouted) {
    v1::ReferralRouted r;
    if (!r.ParseFromString(e.payload())) {
      return absl::DataLossError(
          absl::StrCat("event ", h.seq(), " (ReferralRouted) does not parse"));
    }
    const std::string sender = referral.substr(0, referral.find('/'));
    if (agency == r.recipient_agency()) {
      // The referral itself, as consent allows it now.
      n.set_kind("referral.received");
      ASSIGN_OR_RETURN(v1::ReferralView view, referrals_->View(referral, agency));
      n.set_envelope(view.manifest_envelope());
      *n.mutable_sections() = view.sections();
      *n.mutable_withheld() = view.withheld();
      n.set_redisclosure_notice(view.redisclosure_notice());
      for (const auto& w : view.withheld())
        if (w.since_disclosure()) withheld_now.push_back(w);
      RoutedReferral rr;
      rr.referral = referral;
      rr.delivered.set_recipient_agency(r.recipient_agency());
      rr.delivered.set_attempt(r.attempt());
      rr.delivered.set_consumer(std::string(consumer));
      rr.delivered.set_notification_seq(h.seq());
      *routed = std::move(rr);
    } else if (agency == sender) {
      n.set_kind("referral.routed");
      n.set_payload(e.payload());
    } else {
      // A former recipient: the referral went on to the next candidate.
      n.set_kind("referral.withdrawn");
    }
  } else {
    n.set_kind(FixedKinds().at(type));
    if (CarriesEnvelope(type)) {
      n.set_envelope(e.payload());
    } else {
      n.set_payload(e.payload());
    }
    if (type == names::event::kThreadMessage) {
      ASSIGN_OR_RETURN(v1::ReferralView view, referrals_->View(referral, agency));
      for (const v1::ThreadEntry& t : view.thread()) {
        if (t.seq() != h.seq()) continue;
        *n.mutable_sections() = t.sections();
        *n.mutable_withheld() = t.withheld();
        for (const auto& s : t.sections()) {
          if (s.category() == "sud-part2") n.set_redisclosure_notice(view.redisclosure_notice());
        }
        for (const auto& w : t.withheld())
          if (w.since_disclosure()) withheld_now.push_back(w);
      }
    }
  }

  if (!withheld_now.empty()) {
    // A revocation landed between the disclosure and this delivery: the
    // content stays back, and that is recorded (once per event and agency
    // in this process; again after a restart, which is again true).
    bool first = false;
    {
      absl::MutexLock lock(&mu_);
      first = withheld_recorded_.insert({std::string(agency), h.seq()}).second;
    }
    if (first) {
      v1::DeliveryWithheld w;
      w.set_seq(h.seq());
      w.set_referral(referral);
      w.set_consumer(std::string(consumer));
      for (auto& x : withheld_now) *w.add_withheld() = std::move(x);
      v1::AppendRequest append;
      v1::EventInput* ev =
          trust::AddEvent(&append, names::stream::Delivery(agency), names::event::kDeliveryWithheld,
                          h.subject(), w.SerializeAsString());
      ev->add_agencies(std::string(agency));
      if (absl::Status s = ledger_->Append(std::move(append)).status(); !s.ok()) {
        // Not recorded: the next delivery tries again.
        absl::MutexLock lock(&mu_);
        withheld_recorded_.erase({std::string(agency), h.seq()});
        return s;
      }
      log::Info("notification.withheld_at_delivery",
                {{"agency", std::string(agency)}, {"seq", h.seq()}});
    }
  }
  return n;
}

absl::StatusOr<v1::AckResponse> NotificationCore::Ack(const v1::AckRequest& req,
                                                      absl::string_view agency) {
  ASSIGN_OR_RETURN(ConsumerState * c, Load(agency, req.consumer()));
  for (int attempt = 0; attempt < 5; ++attempt) {
    uint64_t expected = 0;
    v1::AppendRequest append;
    {
      absl::MutexLock lock(&mu_);
      if (req.up_to_seq() <= c->cursor) {
        v1::AckResponse resp;  // at or below the cursor: nothing to do
        resp.set_cursor(c->cursor);
        return resp;
      }
      if (req.up_to_seq() > c->delivered_max) {
        return absl::InvalidArgumentError(
            absl::StrCat("consumer ", c->name, " was sent events up to seq ", c->delivered_max,
                         "; it cannot acknowledge seq ", req.up_to_seq()));
      }
      expected = c->cursor;
      // The recipient now has these referrals: delivered, for their senders.
      for (auto it = c->routed.upper_bound(c->cursor);
           it != c->routed.end() && it->first <= req.up_to_seq(); ++it) {
        *append.add_events() =
            referral::DeliveredEvent(it->second.referral, it->second.delivered, it->second.subject);
      }
    }
    v1::CursorUpdate* u = append.add_cursor_updates();
    u->set_name(CursorName(agency, req.consumer()));
    u->set_position(req.up_to_seq());
    u->set_expected_position(expected);
    absl::StatusOr<v1::Commit> commit = ledger_->Append(std::move(append));
    if (absl::IsFailedPrecondition(commit.status())) {
      // Another ack of the same consumer moved the cursor first.
      ASSIGN_OR_RETURN(std::optional<uint64_t> now, ledger_->GetCursor(u->name()));
      absl::MutexLock lock(&mu_);
      c->cursor = std::max(c->cursor, now.value_or(0));
      continue;
    }
    RETURN_IF_ERROR(commit.status());
    absl::MutexLock lock(&mu_);
    c->cursor = std::max(c->cursor, req.up_to_seq());
    c->attempts.erase(c->attempts.begin(), c->attempts.upper_bound(c->cursor));
    c->routed.erase(c->routed.begin(), c->routed.upper_bound(c->cursor));
    c->position = std::max(c->position, c->cursor);
    c->last_progress = clock_->Now();
    c->last_ack = absl::ToUnixNanos(clock_->Now());
    v1::AckResponse resp;
    resp.set_cursor(c->cursor);
    return resp;
  }
  return absl::AbortedError("the consumer's cursor kept moving; ack again");
}

absl::StatusOr<v1::DeliveryStatusResponse> NotificationCore::Status(absl::string_view agency) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  ASSIGN_OR_RETURN(std::vector<v1::Event> existing,
                   storage::ReadWholeStream(ledger_, ConsumersStream(agency)));
  v1::DeliveryStatusResponse resp;
  resp.set_agency(std::string(agency));
  for (const v1::Event& e : existing) {
    v1::CreateConsumerRequest created;
    if (!created.ParseFromString(e.payload())) continue;
    ASSIGN_OR_RETURN(ConsumerState * c, Load(agency, created.consumer()));
    v1::ConsumerStatus* s = resp.add_consumers();
    s->set_consumer(created.consumer());
    uint64_t cursor = 0;
    {
      absl::MutexLock lock(&mu_);
      cursor = c->cursor;
      s->set_cursor(c->cursor);
      s->set_delivered_up_to(c->delivered_max);
      s->set_connected(c->generation != 0);
      s->set_last_ack_unix_nanos(c->last_ack);
    }
    // Lag: the events waiting for this consumer, counted from the index
    // (headers only), at most 100 000.
    uint64_t lag = 0;
    ASSIGN_OR_RETURN(uint64_t latest, Latest(agency, cursor, &lag));
    s->set_lag(lag);
    s->set_latest_seq(latest);
  }
  return resp;
}

}  // namespace careloop::notification
