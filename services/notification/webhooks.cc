#include "services/notification/webhooks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::notification {

namespace {

using names::stream::kWebhookIndex;  // one WebhookAgency per agency that set one
constexpr char kConsumerLabel[] = "webhook";

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// The host of an http(s) URL ("" when it has none or carries userinfo).
std::string HostOf(absl::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return "";
  absl::string_view rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (rest.find('@') != absl::string_view::npos) return "";
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    return close == absl::string_view::npos ? "" : std::string(rest.substr(1, close - 1));
  }
  return absl::AsciiStrToLower(rest.substr(0, rest.find(':')));
}

bool Allowed(const OutboundPolicy& p, absl::string_view host) {
  return std::find(p.allowed_hosts.begin(), p.allowed_hosts.end(), host) != p.allowed_hosts.end();
}

bool IsLoopbackName(absl::string_view host) {
  return host == "localhost" || absl::EndsWith(host, ".localhost");
}

class CurlPoster final : public HttpPoster {
 public:
  explicit CurlPoster(OutboundPolicy outbound) : outbound_(std::move(outbound)) {}

  HttpResult Post(const std::string& url, const std::vector<std::string>& headers,
                  const std::string& body, absl::Duration timeout) override {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    HttpResult out;
    CURL* c = curl_easy_init();
    if (c == nullptr) {
      out.error = "curl_easy_init failed";
      return out;
    }
    curl_slist* list = nullptr;
    for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
    char error[CURL_ERROR_SIZE] = {0};
    const long ms = static_cast<long>(absl::ToInt64Milliseconds(timeout));
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect is a failure
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    // The address connected to, checked before anything is sent.
    const bool check = !outbound_.allow_private && !Allowed(outbound_, HostOf(url));
    if (check) {
      curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, &CurlPoster::CheckConnected);
      curl_easy_setopt(c, CURLOPT_PREREQDATA, nullptr);
    }
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    out.status = static_cast<int>(code);
    if (rc != CURLE_OK) {
      out.error = error[0] != '\0' ? error : curl_easy_strerror(rc);
    } else if (code < 200 || code > 299) {
      out.error = absl::StrCat("HTTP ", code);
    }
    return out;
  }

 private:
  static int CheckConnected(void*, char* primary_ip, char*, int, int) {
    return IsPublicAddress(primary_ip) ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
  }

  OutboundPolicy outbound_;
};

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  CARELOOP_CHECK(google::protobuf::util::MessageToJsonString(m, &out, o).ok());
  return out;
}

template <typename T>
absl::StatusOr<T> ParsePayload(const v1::Event& e) {
  T t;
  if (!t.ParseFromString(e.payload())) {
    return absl::DataLossError(
        absl::StrCat("event ", e.header().seq(), " (", e.header().type(), ") does not parse"));
  }
  return t;
}

template <typename T>
absl::StatusOr<T> SignedPayload(const v1::Event& e) {
  ASSIGN_OR_RETURN(v1::Envelope env, ParsePayload<v1::Envelope>(e));
  T t;
  if (!t.ParseFromString(env.payload())) {
    return absl::DataLossError(absl::StrCat("event ", e.header().seq(), " does not parse"));
  }
  return t;
}

}  // namespace

std::unique_ptr<HttpPoster> NewCurlPoster(OutboundPolicy outbound) {
  return std::make_unique<CurlPoster>(std::move(outbound));
}

bool IsPublicAddress(absl::string_view ip) {
  const std::string text(ip);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    const uint32_t a = ntohl(v4.s_addr);
    auto in = [a](uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
    return !(in(0x00000000, 8) || in(0x0A000000, 8) || in(0x7F000000, 8) || in(0xA9FE0000, 16) ||
             in(0xAC100000, 12) || in(0xC0A80000, 16) || in(0x64400000, 10) || in(0xC0000000, 24) ||
             in(0xC6120000, 15) || in(0xE0000000, 3));  // multicast and reserved (224/3)
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return false;
  const uint8_t* b = v6.s6_addr;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMapped, 12) == 0) {
    return IsPublicAddress(absl::StrCat(b[12], ".", b[13], ".", b[14], ".", b[15]));
  }
  static const uint8_t kZero[15] = {0};
  if (std::memcmp(b, kZero, 15) == 0) return false;         // :: and ::1
  if ((b[0] & 0xfe) == 0xfc) return false;                  // fc00::/7 unique local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if (b[0] == 0xff) return false;                           // multicast
  return true;
}

std::string SignWebhook(const trust::Ed25519PrivateKey& key, absl::string_view id,
                        int64_t timestamp, absl::string_view body) {
  absl::StatusOr<std::string> sig = key.Sign(absl::StrCat(id, ".", timestamp, ".", body));
  CARELOOP_CHECK(sig.ok());
  return absl::StrCat("v1a,", absl::Base64Escape(*sig));
}

absl::Status ValidateWebhookUrl(absl::string_view url, const OutboundPolicy& outbound) {
  if (url.size() > 2048) return absl::InvalidArgumentError("a webhook URL has at most 2048 bytes");
  for (char ch : url) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
      return absl::InvalidArgumentError("a webhook URL has no spaces or control characters");
  }
  const bool https = absl::StartsWith(url, "https://");
  if (!https && !absl::StartsWith(url, "http://"))
    return absl::InvalidArgumentError("a webhook URL starts with https://");
  const std::string host = HostOf(url);
  if (host.empty()) return absl::InvalidArgumentError("a webhook URL names a host (no userinfo)");
  if (Allowed(outbound, host)) return absl::OkStatus();
  const bool loopback = IsLoopbackName(host) || host == "127.0.0.1" || host == "::1";
  if (!https && !(loopback && outbound.allow_private)) {
    return absl::InvalidArgumentError(
        "a webhook must use https:// (plain http:// only to a loopback host, in dev mode)");
  }
  in6_addr any{};
  const bool literal =
      inet_pton(AF_INET, host.c_str(), &any) == 1 || inet_pton(AF_INET6, host.c_str(), &any) == 1;
  if (!outbound.allow_private && (IsLoopbackName(host) || (literal && !IsPublicAddress(host)))) {
    return absl::InvalidArgumentError(
        "a webhook goes to a public host: loopback, private and link-local addresses only if "
        "the hub's operator allows that host (notification.outbound_allow_hosts)");
  }
  return absl::OkStatus();
}

std::string Webhooks::Stream(absl::string_view agency) { return names::stream::Webhook(agency); }
std::string Webhooks::CursorName(absl::string_view agency) {
  return names::stream::Webhook(agency);
}

Webhooks::Webhooks(storage::Ledger* ledger, NotificationCore* notes, directory::Agencies* directory,
                   Clock* clock, trust::Ed25519PrivateKey key, std::unique_ptr<HttpPoster> http,
                   WebhookOptions options)
    : ledger_(ledger),
      notes_(notes),
      directory_(directory),
      clock_(clock),
      key_(std::move(key)),
      http_(std::move(http)),
      options_(std::move(options)),
      seen_(ledger) {
  policy_ = policy::NotificationTable().Envelopes("SubmitWebhookChange", options_.max_clock_skew,
                                                  directory_);
  CARELOOP_CHECK(!options_.schedule.empty());
}

Webhooks::~Webhooks() { Stop(); }

v1::WebhookKeyResponse Webhooks::Key() const {
  v1::WebhookKeyResponse r;
  r.set_public_key(absl::StrCat("whpk_", absl::Base64Escape(key_.public_key().raw())));
  r.set_public_key_pem(key_.public_key().ToPem());
  return r;
}

// ---- Signed changes ----

absl::StatusOr<v1::AppendRequest> Webhooks::Plan(const trust::VerifiedEnvelope& v,
                                                 absl::string_view bytes) {
  const v1::Envelope& e = v.envelope;
  std::string agency;
  if (e.payload_type() == names::payload::kSetWebhook) {
    agency = static_cast<const v1::SetWebhook&>(*v.payload).agency_id();
  } else {
    agency = static_cast<const v1::ReplayDeadLetters&>(*v.payload).agency_id();
  }
  if (e.sender_agency() != agency && e.sender_agency() != directory::kHubAgency) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " may not change the webhook of ", agency));
  }
  if (!directory_->Get(agency).has_value())
    return absl::NotFoundError(absl::StrCat("no agency ", agency));
  ASSIGN_OR_RETURN(uint64_t version, ledger_->StreamVersion(Stream(agency)));
  v1::AppendRequest req;
  v1::EventInput* ev = trust::AddEvent(&req, Stream(agency), trust::ShortTypeName(e.payload_type()),
                                       {}, std::string(bytes));
  ev->add_agencies(agency);
  v1::Precondition* p = req.add_preconditions();
  p->set_stream(Stream(agency));
  p->set_expected_version(version);
  if (e.payload_type() == names::payload::kSetWebhook) {
    const auto& w = static_cast<const v1::SetWebhook&>(*v.payload);
    if (w.enabled() || !w.url().empty())
      RETURN_IF_ERROR(ValidateWebhookUrl(w.url(), options_.outbound));
    if (version == 0) {
      trust::AddEvent(&req, kWebhookIndex, names::event::kWebhookAgency, {}, agency);
    }
  } else {
    const auto& r = static_cast<const v1::ReplayDeadLetters&>(*v.payload);
    ASSIGN_OR_RETURN(State * st, Get(agency));
    absl::MutexLock run(&run_mu_);
    RETURN_IF_ERROR(Refresh(st));
    bool overlaps = false;
    for (const auto& d : st->dead)
      overlaps |= r.from_seq() <= d.to_seq() && r.to_seq() >= d.from_seq();
    if (r.from_seq() == 0 || r.from_seq() > r.to_seq() || !overlaps) {
      return absl::InvalidArgumentError(absl::StrCat("replay [", r.from_seq(), ", ", r.to_seq(),
                                                     "] names no dead-lettered events of ", agency,
                                                     " (careloop deliveries dead lists them)"));
    }
  }
  return req;
}

absl::StatusOr<v1::SubmitEnvelopeResponse> Webhooks::Submit(absl::string_view envelope) {
  ASSIGN_OR_RETURN(
      trust::Accepted a,
      trust::AcceptSigned(envelope, policy_, *directory_, seen_, ledger_, clock_->Now(),
                          [&](const trust::VerifiedEnvelope& v, absl::string_view b, absl::Time) {
                            return Plan(v, b);
                          }));
  v1::SubmitEnvelopeResponse resp;
  ASSIGN_OR_RETURN(*resp.mutable_receipt(), ledger_->GetReceipt(a.change_seq));
  return resp;
}

// ---- State ----

absl::StatusOr<Webhooks::State*> Webhooks::Get(absl::string_view agency) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  {
    absl::MutexLock lock(&mu_);
    auto it = states_.find(std::string(agency));
    if (it != states_.end()) return it->second.get();
  }
  ASSIGN_OR_RETURN(std::optional<uint64_t> cursor, ledger_->GetCursor(CursorName(agency)));
  absl::MutexLock lock(&mu_);
  auto& slot = states_[std::string(agency)];
  if (!slot) {
    slot = std::make_unique<State>();
    slot->agency = std::string(agency);
    slot->cursor = cursor.value_or(0);
  }
  return slot.get();
}

absl::Status Webhooks::Refresh(State* st) {
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadStreamFrom(ledger_, Stream(st->agency), st->version + 1));
  for (const v1::Event& e : events) {
    const std::string& type = e.header().type();
    const int64_t at = e.header().commit_time_unix_nanos();
    if (type == names::event::kSetWebhook) {
      ASSIGN_OR_RETURN(v1::SetWebhook w, SignedPayload<v1::SetWebhook>(e));
      st->url = w.url();
      st->enabled = w.enabled();
      st->disabled_by_hub = false;
      st->failing_since = 0;
      st->attempts = 0;
      st->next_attempt = absl::InfinitePast();
    } else if (type == names::event::kWebhookFailing) {
      ASSIGN_OR_RETURN(v1::WebhookFailing f, ParsePayload<v1::WebhookFailing>(e));
      st->failing_since = f.since_unix_nanos();
      st->last_error = f.error();
      st->attempts = f.attempt();
      const size_t i = std::min<size_t>(f.attempt() - 1, options_.schedule.size() - 1);
      st->next_attempt = absl::FromUnixNanos(at) + options_.schedule[i];
    } else if (type == names::event::kWebhookRecovered) {
      st->failing_since = 0;
      st->attempts = 0;
    } else if (type == names::event::kWebhookDisabled) {
      ASSIGN_OR_RETURN(v1::WebhookDisabled d, ParsePayload<v1::WebhookDisabled>(e));
      st->enabled = false;
      st->disabled_by_hub = true;
      st->failing_since = 0;
      st->attempts = 0;
      st->cursor = std::max(st->cursor, d.dead_to_seq());
      v1::DeadLetterRange range;
      range.set_from_seq(d.dead_from_seq());
      range.set_to_seq(d.dead_to_seq());
      range.set_dead_unix_nanos(at);
      range.set_reason(
          absl::StrCat("endpoint failing since ",
                       absl::FormatTime(absl::FromUnixNanos(d.failing_since_unix_nanos())), ": ",
                       d.last_error()));
      st->dead.push_back(range);
    } else if (type == names::event::kReplayDeadLetters) {
      ASSIGN_OR_RETURN(v1::ReplayDeadLetters rd, SignedPayload<v1::ReplayDeadLetters>(e));
      Replay rp;
      rp.from = rd.from_seq();
      rp.to = rd.to_seq();
      rp.requested = at;
      rp.position = rd.from_seq() - 1;
      st->replays.push_back(rp);
    } else if (type == names::event::kDeadLettersReplayed) {
      ASSIGN_OR_RETURN(v1::DeadLettersReplayed d, ParsePayload<v1::DeadLettersReplayed>(e));
      for (Replay& rp : st->replays) {
        if (rp.done == 0 && rp.from == d.from_seq() && rp.to == d.to_seq()) {
          rp.done = at;
          break;
        }
      }
    }
    st->version = e.header().stream_version();
  }
  return absl::OkStatus();
}

absl::Status Webhooks::Append(v1::AppendRequest req) {
  return ledger_->Append(std::move(req)).status();
}

absl::StatusOr<HttpResult> Webhooks::PostNotification(const std::string& url, const std::string& id,
                                                      const v1::Notification& n) {
  const std::string body = Json(n);
  const int64_t ts = absl::ToUnixSeconds(clock_->Now());
  std::vector<std::string> headers = {
      "content-type: application/json", absl::StrCat("webhook-id: ", id),
      absl::StrCat("webhook-timestamp: ", ts),
      absl::StrCat("webhook-signature: ", SignWebhook(key_, id, ts, body)),
      "user-agent: careloop/0.1"};
  return http_->Post(url, headers, body, options_.request_timeout);
}

absl::Status Webhooks::Deliver(State* st, int* posts) {
  const absl::Time now = clock_->Now();
  if (now < st->next_attempt) return absl::OkStatus();
  if (st->failing_since != 0 &&
      now - absl::FromUnixNanos(st->failing_since) >= options_.disable_after) {
    return Disable(st);
  }
  Replay* replay = nullptr;
  for (Replay& rp : st->replays) {
    if (rp.done == 0) {
      replay = &rp;
      break;
    }
  }
  // Nothing new for the agency since the cursor: no index read (this runs
  // for every enabled webhook on every pass).
  if (replay == nullptr && !notes_->MayHaveAfter(st->agency, st->cursor)) return absl::OkStatus();
  uint64_t last = 0;
  const uint64_t after = replay != nullptr ? replay->position : st->cursor;
  ASSIGN_OR_RETURN(std::vector<NotificationCore::Item> items,
                   notes_->Read(st->agency, kConsumerLabel, after, 1, &last));
  if (replay != nullptr && (items.empty() || items[0].notification.seq() > replay->to)) {
    return FinishReplay(st, *replay);
  }
  if (items.empty()) return absl::OkStatus();
  v1::Notification& n = items[0].notification;
  n.set_attempt(st->attempts + 1);
  ASSIGN_OR_RETURN(HttpResult res, PostNotification(st->url, absl::StrCat(n.seq()), n));
  ++*posts;
  if (res.error.empty()) return Delivered(st, replay, items[0]);
  return RecordFailure(st, n, res.error, now);
}

absl::Status Webhooks::Disable(State* st) {
  // Failing past the period: disable, tell the agency, dead-letter what it missed.
  uint64_t count = 0;
  ASSIGN_OR_RETURN(uint64_t latest, notes_->Latest(st->agency, st->cursor, &count));
  v1::WebhookDisabled d;
  d.set_url(st->url);
  d.set_failing_since_unix_nanos(st->failing_since);
  d.set_last_error(st->last_error);
  d.set_attempts(st->attempts);
  d.set_dead_from_seq(st->cursor + 1);
  d.set_dead_to_seq(std::max(latest, st->cursor + 1));
  v1::AppendRequest req;
  v1::EventInput* ev = trust::AddEvent(&req, Stream(st->agency), names::event::kWebhookDisabled, {},
                                       d.SerializeAsString());
  ev->add_agencies(st->agency);  // the agency is told on its streams
  v1::CursorUpdate* u = req.add_cursor_updates();
  u->set_name(CursorName(st->agency));
  u->set_position(d.dead_to_seq());
  u->set_expected_position(st->cursor);
  RETURN_IF_ERROR(Append(std::move(req)));
  log::Warn("webhook.disabled", {{"agency", st->agency},
                                 {"dead_from_seq", d.dead_from_seq()},
                                 {"dead_to_seq", d.dead_to_seq()},
                                 {"events", count}});
  return Refresh(st);
}

absl::Status Webhooks::FinishReplay(State* st, const Replay& replay) {
  v1::DeadLettersReplayed done;
  done.set_from_seq(replay.from);
  done.set_to_seq(replay.to);
  v1::AppendRequest req;
  trust::AddEvent(&req, Stream(st->agency), names::event::kDeadLettersReplayed, {},
                  done.SerializeAsString());
  RETURN_IF_ERROR(Append(std::move(req)));
  log::Info("webhook.replayed",
            {{"agency", st->agency}, {"from_seq", replay.from}, {"to_seq", replay.to}});
  return Refresh(st);
}

absl::Status Webhooks::Delivered(State* st, Replay* replay, const NotificationCore::Item& item) {
  const v1::Notification& n = item.notification;
  v1::AppendRequest req;
  if (replay != nullptr) {
    replay->position = n.seq();
  } else {
    v1::CursorUpdate* u = req.add_cursor_updates();
    u->set_name(CursorName(st->agency));
    u->set_position(n.seq());
    u->set_expected_position(st->cursor);
    if (item.routed) {
      const auto& r = *item.routed;
      *req.add_events() = referral::DeliveredEvent(r.referral, r.delivered, r.subject);
    }
  }
  if (st->failing_since != 0) {
    v1::WebhookRecovered rec;
    rec.set_seq(n.seq());
    rec.set_attempts(st->attempts + 1);
    trust::AddEvent(&req, Stream(st->agency), names::event::kWebhookRecovered, {},
                    rec.SerializeAsString());
  }
  if (req.events_size() + req.cursor_updates_size() > 0) {
    absl::Status s = Append(std::move(req));
    if (absl::IsFailedPrecondition(s)) {
      // The cursor moved elsewhere: take it from the ledger.
      ASSIGN_OR_RETURN(std::optional<uint64_t> c, ledger_->GetCursor(CursorName(st->agency)));
      st->cursor = c.value_or(0);
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(s);
  }
  if (replay == nullptr) st->cursor = n.seq();
  st->attempts = 0;
  st->failing_since = 0;
  st->next_attempt = absl::InfinitePast();
  return Refresh(st);
}

absl::Status Webhooks::RecordFailure(State* st, const v1::Notification& n, const std::string& error,
                                     absl::Time now) {
  log::Warn(
      "webhook.failed",
      {{"agency", st->agency}, {"seq", n.seq()}, {"attempt", st->attempts + 1}, {"cause", error}});
  // Every failed attempt is recorded, so the schedule (when the next try is
  // due, when the endpoint is disabled) is the same after a restart.
  v1::WebhookFailing f;
  f.set_seq(n.seq());
  f.set_since_unix_nanos(st->failing_since != 0 ? st->failing_since : absl::ToUnixNanos(now));
  f.set_error(error);
  f.set_attempt(st->attempts + 1);
  v1::AppendRequest req;
  trust::AddEvent(&req, Stream(st->agency), names::event::kWebhookFailing, {},
                  f.SerializeAsString());
  RETURN_IF_ERROR(Append(std::move(req)));
  return Refresh(st);
}

absl::StatusOr<int> Webhooks::RunOnce() {
  absl::MutexLock run(&run_mu_);
  // Agencies that ever set a webhook.
  ASSIGN_OR_RETURN(std::vector<v1::Event> index,
                   storage::ReadStreamFrom(ledger_, kWebhookIndex, index_version_ + 1));
  for (const v1::Event& e : index) {
    RETURN_IF_ERROR(Get(e.payload()).status());
    index_version_ = e.header().stream_version();
  }
  std::vector<State*> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [agency, st] : states_) all.push_back(st.get());
  }
  int posts = 0;
  for (State* st : all) {
    RETURN_IF_ERROR(Refresh(st));
    if (!st->enabled || st->url.empty()) continue;
    if (absl::Status s = Deliver(st, &posts); !s.ok()) {
      log::Warn("webhook.pass_failed",
                {{"agency", st->agency}, {"cause", std::string(s.message())}});
    }
  }
  return posts;
}

void Webhooks::Start() {
  thread_ = std::thread([this] {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      mu_.Unlock();
      absl::StatusOr<int> n = RunOnce();
      if (!n.ok()) log::Warn("webhook.run_failed", {{"cause", std::string(n.status().message())}});
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll);
    }
  });
}

void Webhooks::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

// ---- Reads ----

absl::StatusOr<std::optional<v1::WebhookStatus>> Webhooks::Status(absl::string_view agency) {
  ASSIGN_OR_RETURN(uint64_t version, ledger_->StreamVersion(Stream(agency)));
  if (version == 0) return std::nullopt;
  ASSIGN_OR_RETURN(State * st, Get(agency));
  absl::MutexLock run(&run_mu_);
  RETURN_IF_ERROR(Refresh(st));
  v1::WebhookStatus s;
  s.set_url(st->url);
  s.set_enabled(st->enabled);
  s.set_cursor(st->cursor);
  s.set_failing_since_unix_nanos(st->failing_since);
  s.set_attempts(st->attempts);
  s.set_last_error(st->last_error);
  if (st->next_attempt != absl::InfinitePast())
    s.set_next_attempt_unix_nanos(absl::ToUnixNanos(st->next_attempt));
  s.set_disabled_by_hub(st->disabled_by_hub);
  return s;
}

absl::StatusOr<v1::ListDeadLettersResponse> Webhooks::ListDeadLetters(
    const v1::ListDeadLettersRequest& req, absl::string_view caller) {
  const std::string agency = req.agency_id().empty() ? std::string(caller) : req.agency_id();
  if (agency != caller && caller != directory::kHubAgency) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", caller, " may not read the dead letters of ", agency));
  }
  ASSIGN_OR_RETURN(State * st, Get(agency));
  absl::MutexLock run(&run_mu_);
  RETURN_IF_ERROR(Refresh(st));
  v1::ListDeadLettersResponse resp;
  for (v1::DeadLetterRange d : st->dead) {
    uint64_t count = 0, after = d.from_seq() - 1;
    bool done = false;
    while (!done) {
      v1::ReadIndexRequest r;
      r.set_agency(agency);
      r.set_after_seq(after);
      ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
      for (const v1::Event& e : page.events()) {
        if (e.header().seq() > d.to_seq()) {
          done = true;
          break;
        }
        after = e.header().seq();
        count += DeliveredTypes().contains(e.header().type());
      }
      if (!page.more()) break;
    }
    d.set_events(static_cast<uint32_t>(count));
    for (const Replay& rp : st->replays) {
      if (rp.from <= d.from_seq() && rp.to >= d.to_seq()) {
        d.set_replay_requested_unix_nanos(rp.requested);
        d.set_replayed_unix_nanos(rp.done);
      }
    }
    *resp.add_ranges() = d;
  }
  return resp;
}

absl::StatusOr<v1::TestWebhookResponse> Webhooks::Test(absl::string_view caller) {
  ASSIGN_OR_RETURN(State * st, Get(caller));
  std::string url;
  {
    absl::MutexLock run(&run_mu_);
    RETURN_IF_ERROR(Refresh(st));
    url = st->url;
  }
  if (url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agency ", caller, " has no webhook (careloop webhook set)"));
  }
  v1::Notification n;
  n.set_kind("webhook.test");
  n.set_at_unix_nanos(absl::ToUnixNanos(clock_->Now()));
  n.set_attempt(1);
  const std::string id = absl::StrCat("test-", n.at_unix_nanos());
  ASSIGN_OR_RETURN(HttpResult res, PostNotification(url, id, n));
  v1::TestWebhookResponse resp;
  resp.set_http_status(res.status);
  resp.set_error(res.error);
  resp.set_webhook_id(id);
  return resp;
}

}  // namespace careloop::notification
