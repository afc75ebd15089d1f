// careloop watch | deliveries status|dead|replay | webhook set|test|key.
//
// `watch` creates the named consumer if it does not exist, streams what
// concerns the agency, prints each event and then acknowledges it, so the
// next run resumes after the last one printed. A lost connection (a hub
// restart) is retried with backoff; what was printed but not acknowledged
// comes again, with a higher attempt number, and can be deduplicated on seq.
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "careloop/v1/notification.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

struct WatchFlags {
  std::string consumer = "cli";
  uint64_t from_seq = 0;
  uint64_t replay_from = 0;  // read again from this seq (at most the cursor + 1)
  uint64_t count = 0;        // 0: until interrupted
  double idle_exit = 0;      // seconds; 0: never
  bool no_ack = false;
};

std::string Line(const v1::Notification& n) {
  std::string s = absl::StrCat(n.seq(), "  ", When(n.at_unix_nanos()), "  ", n.kind());
  if (!n.referral().empty()) absl::StrAppend(&s, "  ", n.referral());
  if (n.attempt() > 1) absl::StrAppend(&s, "  attempt ", n.attempt());
  if (n.sections_size() + n.withheld_size() > 0) {
    absl::StrAppend(&s, "  sections ", n.sections_size(), " withheld ", n.withheld_size());
  }
  return s;
}

absl::StatusOr<v1::AckResponse> AckUpTo(const Globals& g, v1::NotificationService::Stub* stub,
                                        const std::string& consumer, uint64_t seq) {
  grpc::ClientContext ctx;
  Prepare(g, &ctx);
  v1::AckRequest req;
  req.set_consumer(consumer);
  req.set_up_to_seq(seq);
  v1::AckResponse resp;
  grpc::Status st = stub->Ack(&ctx, req, &resp);
  if (!st.ok()) return FromGrpcStatus(st);
  return resp;
}

// One connection's worth of watching. Returns OK when done (count reached,
// idle), UNAVAILABLE when the connection was lost (retry), else the error.
absl::Status WatchOnce(Globals& g, const WatchFlags& f, uint64_t* printed) {
  auto stub = v1::NotificationService::NewStub(Connect(g));
  {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::CreateConsumerRequest req;
    req.set_consumer(f.consumer);
    req.set_start_after_seq(f.from_seq);
    v1::CreateConsumerResponse resp;
    grpc::Status st = stub->CreateConsumer(&ctx, req, &resp);
    if (!st.ok()) return FromGrpcStatus(st);
    if (resp.created()) {
      std::cerr << "careloop: created consumer " << f.consumer << "\n";
    } else {
      std::cerr << "careloop: consumer " << f.consumer << " resumes after seq " << resp.cursor()
                << "\n";
    }
  }
  grpc::ClientContext ctx;  // no deadline: a stream lives until it is done
  if (!g.dev_agency.empty()) ctx.AddMetadata("x-careloop-dev-agency", g.dev_agency);
  v1::SubscribeRequest req;
  req.set_consumer(f.consumer);
  // Only on the first connection: a reconnect resumes after the last ack.
  if (*printed == 0) req.set_from_seq(f.replay_from);
  std::unique_ptr<grpc::ClientReader<v1::Notification>> reader = stub->Subscribe(&ctx, req);
  // --idle-exit: a watchdog cancels the stream when nothing came for a while.
  std::atomic<int64_t> last_activity{absl::ToUnixNanos(absl::Now())};
  std::atomic<bool> done{false}, idled{false};
  std::thread watchdog;
  if (f.idle_exit > 0) {
    watchdog = std::thread([&] {
      while (!done.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (absl::Now() - absl::FromUnixNanos(last_activity.load()) > absl::Seconds(f.idle_exit)) {
          idled.store(true);
          ctx.TryCancel();
          return;
        }
      }
    });
  }
  absl::Status result;
  v1::Notification n;
  while (reader->Read(&n)) {
    last_activity.store(absl::ToUnixNanos(absl::Now()));
    if (g.json) {
      std::cout << ToJson(n) << "\n";
    } else {
      std::cout << Line(n) << "\n";
    }
    std::cout.flush();
    if (!f.no_ack) {
      absl::StatusOr<v1::AckResponse> a = AckUpTo(g, stub.get(), f.consumer, n.seq());
      if (!a.ok()) {
        result = a.status();
        break;
      }
    }
    if (f.count > 0 && ++*printed >= f.count) break;
  }
  done.store(true);
  if (!result.ok() || (f.count > 0 && *printed >= f.count)) ctx.TryCancel();
  grpc::Status st = reader->Finish();
  if (watchdog.joinable()) watchdog.join();
  if (!result.ok()) return result;
  if (f.count > 0 && *printed >= f.count) return absl::OkStatus();
  if (idled.load()) return absl::OkStatus();
  if (st.ok()) return absl::UnavailableError("the hub ended the stream");
  return FromGrpcStatus(st);
}

void Watch(Globals& g, const WatchFlags& f) {
  uint64_t printed = 0;
  absl::Duration backoff = absl::Milliseconds(200);
  while (true) {
    absl::Status s = WatchOnce(g, f, &printed);
    if (s.ok()) return;
    if (!absl::IsUnavailable(s)) {
      g.exit_code = Fail(s);
      return;
    }
    std::cerr << "careloop: connection lost (" << s.message() << "); retrying in "
              << absl::FormatDuration(backoff) << "\n";
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff));
    backoff = std::min(backoff * 2, absl::Seconds(10));
  }
}

// Signs a SetWebhook or ReplayDeadLetters and sends it to NotificationService.
void SubmitWebhookChange(Globals& g, const google::protobuf::Message& payload, const Signer& s) {
  absl::StatusOr<std::string> envelope = Sign(payload, s);
  if (!envelope.ok()) {
    g.exit_code = FailUsage(std::string(envelope.status().message()));
    return;
  }
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(*envelope);
  CallUnary<v1::NotificationService, v1::SubmitEnvelopeRequest, v1::SubmitEnvelopeResponse>(
      g, &v1::NotificationService::Stub::SubmitWebhookChange, req,
      [](const v1::SubmitEnvelopeResponse& r) {
        v1::EventHeader h;
        h.ParseFromString(r.receipt().header_bytes());
        std::cout << "accepted: " << h.type() << " at seq " << h.seq() << "\n";
      });
}

}  // namespace

void AddNotificationCommands(CLI::App& app, Globals& g) {
  auto f = std::make_shared<WatchFlags>();
  CLI::App* watch = app.add_subcommand(
      "watch", "stream what concerns your agency, acknowledging each event once printed");
  watch->add_option("--consumer", f->consumer, "the named consumer (created if missing)")
      ->capture_default_str();
  watch->add_option(
      "--from-seq", f->from_seq,
      "a new consumer starts after this seq (default: from the agency's first event)");
  watch->add_option(
      "--replay-from", f->replay_from,
      "read again from this seq (events already acknowledged; at most the cursor + 1)");
  watch->add_option("--count", f->count, "exit after this many events");
  watch->add_option("--idle-exit", f->idle_exit, "exit when nothing arrives for this many seconds");
  watch->add_flag("--no-ack", f->no_ack, "print without acknowledging (they will come again)");
  watch->callback([&g, f] { Watch(g, *f); });

  CLI::App* deliveries = app.add_subcommand("deliveries", "your agency's consumers and their lag");
  deliveries->require_subcommand(1);
  deliveries->add_subcommand("status", "each consumer's cursor, lag and connection")
      ->callback([&g] {
        CallUnary<v1::NotificationService, v1::DeliveryStatusRequest, v1::DeliveryStatusResponse>(
            g, &v1::NotificationService::Stub::Status, v1::DeliveryStatusRequest(),
            [](const v1::DeliveryStatusResponse& r) {
              std::cout << "agency " << r.agency() << "\n";
              if (r.consumers().empty()) std::cout << "  no consumers (careloop watch makes one)\n";
              for (const auto& c : r.consumers()) {
                std::cout << "  " << c.consumer() << "  acked " << c.cursor() << "  lag " << c.lag()
                          << "  latest " << c.latest_seq()
                          << (c.connected() ? "  connected" : "  not connected") << "  last ack "
                          << When(c.last_ack_unix_nanos()) << "\n";
              }
              if (r.has_webhook()) {
                const v1::WebhookStatus& w = r.webhook();
                std::cout << "  webhook " << w.url() << "  "
                          << (w.enabled() ? "enabled"
                                          : (w.disabled_by_hub() ? "DISABLED (failing)" : "off"))
                          << "  delivered up to " << w.cursor() << "\n";
                if (w.failing_since_unix_nanos() != 0) {
                  std::cout << "    failing since " << When(w.failing_since_unix_nanos()) << ", "
                            << w.attempts() << " attempts, last error: " << w.last_error()
                            << ", next try " << When(w.next_attempt_unix_nanos()) << "\n";
                }
              }
            });
      });

  auto dead_agency = std::make_shared<std::string>();
  CLI::App* dead =
      deliveries->add_subcommand("dead", "events a disabled webhook missed (dead letters)");
  dead->add_option("--agency", *dead_agency, "whose (the hub may name any; default: yours)");
  dead->callback([&g, dead_agency] {
    v1::ListDeadLettersRequest req;
    req.set_agency_id(*dead_agency);
    CallUnary<v1::NotificationService, v1::ListDeadLettersRequest, v1::ListDeadLettersResponse>(
        g, &v1::NotificationService::Stub::ListDeadLetters, req,
        [](const v1::ListDeadLettersResponse& r) {
          if (r.ranges().empty()) std::cout << "no dead letters\n";
          for (const auto& d : r.ranges()) {
            std::cout << "seq " << d.from_seq() << ".." << d.to_seq() << "  " << d.events()
                      << " events  dead " << When(d.dead_unix_nanos()) << "  "
                      << (d.replayed_unix_nanos() != 0
                              ? "replayed " + When(d.replayed_unix_nanos())
                              : (d.replay_requested_unix_nanos() != 0 ? "replay pending"
                                                                      : "not replayed"))
                      << "\n  " << d.reason() << "\n";
          }
        });
  });

  struct Replay {
    Signer signer;
    std::string agency;
    uint64_t from = 0, to = 0;
  };
  auto replay = std::make_shared<Replay>();
  CLI::App* rp = deliveries->add_subcommand(
      "replay", "send a dead-lettered range to the webhook again (signed by an admin)");
  rp->add_option("--from-seq", replay->from, "first seq of the range")->required();
  rp->add_option("--to-seq", replay->to, "last seq of the range")->required();
  rp->add_option("--agency", replay->agency, "whose webhook (default: the signer's agency)");
  AddSignFlags(rp, replay->signer, g);
  rp->callback([&g, replay] {
    v1::ReplayDeadLetters p;
    p.set_agency_id(replay->agency.empty() ? replay->signer.sender : replay->agency);
    p.set_from_seq(replay->from);
    p.set_to_seq(replay->to);
    SubmitWebhookChange(g, p, replay->signer);
  });

  CLI::App* webhook =
      app.add_subcommand("webhook", "deliver to an HTTPS endpoint instead of a stream");
  webhook->require_subcommand(1);
  struct Set {
    Signer signer;
    std::string agency, url;
    bool disable = false;
  };
  auto set = std::make_shared<Set>();
  CLI::App* ws = webhook->add_subcommand(
      "set",
      "set (or re-enable, or with --disable turn off) your agency's webhook; signed by an admin");
  ws->add_option("--url", set->url, "https://...; http:// only to a loopback host");
  ws->add_flag("--disable", set->disable, "stop delivering to the webhook");
  ws->add_option("--agency", set->agency, "whose webhook (default: the signer's agency)");
  AddSignFlags(ws, set->signer, g);
  ws->callback([&g, set] {
    if (!set->disable && set->url.empty()) {
      g.exit_code = FailUsage("webhook set needs --url (or --disable)");
      return;
    }
    v1::SetWebhook p;
    p.set_agency_id(set->agency.empty() ? set->signer.sender : set->agency);
    p.set_url(set->url);
    p.set_enabled(!set->disable);
    SubmitWebhookChange(g, p, set->signer);
  });
  webhook->add_subcommand("test", "POST a signed webhook.test event to your webhook now")
      ->callback([&g] {
        CallUnary<v1::NotificationService, v1::TestWebhookRequest, v1::TestWebhookResponse>(
            g, &v1::NotificationService::Stub::TestWebhook, v1::TestWebhookRequest(),
            [&g](const v1::TestWebhookResponse& r) {
              if (r.error().empty()) {
                std::cout << "delivered: HTTP " << r.http_status() << " (webhook-id "
                          << r.webhook_id() << ")\n";
              } else {
                std::cout << "NOT delivered: " << r.error() << "\n";
                g.exit_code = kVerifyFailed;
              }
            });
      });
  webhook->add_subcommand("key", "the public key that verifies webhook signatures")->callback([&g] {
    CallUnary<v1::NotificationService, v1::WebhookKeyRequest, v1::WebhookKeyResponse>(
        g, &v1::NotificationService::Stub::WebhookKey, v1::WebhookKeyRequest(),
        [](const v1::WebhookKeyResponse& r) {
          std::cout << r.public_key() << "\n" << r.public_key_pem();
        });
  });
}

}  // namespace careloop::cli
