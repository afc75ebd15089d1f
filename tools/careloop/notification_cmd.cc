// careloop watch | deliveries status.
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
  uint64_t count = 0;          // 0: until interrupted
  double idle_exit = 0;        // seconds; 0: never
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
  std::unique_ptr<grpc::ClientReader<v1::Notification>> reader = stub->Subscribe(&ctx, req);
  // --idle-exit: a watchdog cancels the stream when nothing came for a while.
  std::atomic<int64_t> last_activity{absl::ToUnixNanos(absl::Now())};
  std::atomic<bool> done{false}, idled{false};
  std::thread watchdog;
  if (f.idle_exit > 0) {
    watchdog = std::thread([&] {
      while (!done.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (absl::Now() - absl::FromUnixNanos(last_activity.load()) >
            absl::Seconds(f.idle_exit)) {
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

}  // namespace

void AddNotificationCommands(CLI::App& app, Globals& g) {
  auto f = std::make_shared<WatchFlags>();
  CLI::App* watch = app.add_subcommand(
      "watch", "stream what concerns your agency, acknowledging each event once printed");
  watch->add_option("--consumer", f->consumer, "the named consumer (created if missing)")
      ->capture_default_str();
  watch->add_option("--from-seq", f->from_seq,
                    "a new consumer starts after this seq (default: from the agency's first event)");
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
                          << (c.connected() ? "  connected" : "  not connected")
                          << "  last ack " << When(c.last_ack_unix_nanos()) << "\n";
              }
            });
      });
}

}  // namespace careloop::cli
