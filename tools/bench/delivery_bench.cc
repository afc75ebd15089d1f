// Delivery while ingesting: `--agencies` community agencies each hold a
// subscription (gRPC stream) and acknowledge every event; a hospital sends
// signed referrals over gRPC at `--rate` per second (open loop), each to one
// of the agencies. Reported: end-to-end latency from "submit acknowledged"
// (the Submit RPC returned) to "event received by the recipient", p50/p99,
// and the rate of referrals submitted, delivered and acknowledged. With
// --rate 0 the senders go as fast as they can (closed loop, --senders of
// them): the submit -> delivered -> acknowledged throughput.
//
//   delivery_bench [--agencies 100] [--rate 1000] [--seconds 10] [--senders 16]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/runtime.h"
#include "careloop/v1/notification.grpc.pb.h"
#include "services/notification/notification_grpc_service.h"
#include "services/referral/referral_grpc_service.h"
#include "tools/bench/bench_hub.h"
#include "tools/bench/bench_main.h"

using namespace careloop;

namespace {

struct Times {
  absl::Time sent, acked, received, ack_done;
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"delivery to subscribed agencies while ingesting"};
  int agencies = 100, senders = 16;
  double rate = 1000, seconds = 10;
  std::string dir;
  app.add_option("--agencies", agencies, "subscribed community agencies");
  app.add_option("--rate", rate, "referrals per second (0: as fast as the senders go)");
  app.add_option("--seconds", seconds, "how long to send");
  app.add_option("--senders", senders, "sending threads");
  app.add_option("--dir", dir, "scratch directory on the disk to measure (default: a temp dir)");
  CLI11_PARSE(app, argc, argv);
  log::Init(log::Level::kWarn, log::Format::kLogfmt);
  bench::Scratch scratch(dir, "delbench");
  dir = scratch.path();

  auto hub = std::make_unique<bench::BenchHub>(dir);
  hub->Register("org.stmarys", "sender");
  std::vector<std::string> ids;
  for (int i = 0; i < agencies; ++i) {
    ids.push_back(absl::StrFormat("org.agency%03d", i));
    hub->Register(ids.back(), "receiver");
  }
  for (int s = 0; s < senders; ++s) hub->GrantNetworkConsent(absl::StrCat("bench-", s));
  notification::NotificationCore notes(hub->ledger.get(), hub->referrals.get(), SystemClock());
  CARELOOP_CHECK(notes.Start().ok());
  notification::WebhookOptions hook_options;
  hook_options.outbound.allow_private = true;  // nothing is delivered: no webhook is set
  notification::Webhooks webhooks(hub->ledger.get(), &notes, hub->state.get(), SystemClock(),
                                  *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0d')),
                                  notification::NewCurlPoster(hook_options.outbound), hook_options);
  referral::ReferralGrpcService referral_service(hub->referrals.get(), hub->state.get(),
                                                 /*tls=*/false, /*submit_inline=*/true);
  notification::Notifications notifications(&notes, &webhooks, hub->state.get());
  notification::NotificationGrpcService notification_service(&notifications, hub->state.get(),
                                                             /*tls=*/false);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&referral_service);
  b.RegisterService(&notification_service);
  auto server = b.BuildAndStart();
  const std::string address = absl::StrCat("127.0.0.1:", port);

  absl::Mutex mu;
  std::map<std::string, Times> times;  // by referral id
  std::atomic<bool> stop_readers{false};
  std::atomic<int64_t> received{0}, acked{0};

  // The agencies: a consumer each, starting now; every event acknowledged.
  std::vector<std::thread> readers;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(agencies);
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  for (int i = 0; i < agencies; ++i) {
    contexts[i] = std::make_unique<grpc::ClientContext>();
    readers.emplace_back([&, i] {
      auto stub = v1::NotificationService::NewStub(channel);
      {
        grpc::ClientContext ctx;
        ctx.AddMetadata("x-careloop-dev-agency", ids[i]);
        v1::CreateConsumerRequest req;
        req.set_consumer("bench");
        req.set_start_after_seq(hub->ledger->size());
        v1::CreateConsumerResponse resp;
        CARELOOP_CHECK(stub->CreateConsumer(&ctx, req, &resp).ok());
      }
      grpc::ClientContext& ctx = *contexts[i];
      ctx.AddMetadata("x-careloop-dev-agency", ids[i]);
      v1::SubscribeRequest req;
      req.set_consumer("bench");
      auto reader = stub->Subscribe(&ctx, req);
      v1::Notification n;
      while (reader->Read(&n)) {
        const absl::Time at = absl::Now();
        std::string id;
        if (n.kind() == "referral.received") {
          id = n.referral().substr(n.referral().find('/') + 1);
          absl::MutexLock lock(&mu);
          times[id].received = at;
          ++received;
        }
        grpc::ClientContext actx;
        actx.AddMetadata("x-careloop-dev-agency", ids[i]);
        v1::AckRequest a;
        a.set_consumer("bench");
        a.set_up_to_seq(n.seq());
        v1::AckResponse ar;
        if (stub->Ack(&actx, a, &ar).ok() && !id.empty()) {
          absl::MutexLock lock(&mu);
          times[id].ack_done = absl::Now();
          ++acked;
        }
      }
      reader->Finish();
    });
  }

  // The hospital.
  std::atomic<int64_t> submitted{0}, errors{0};
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  std::vector<std::thread> sending;
  for (int s = 0; s < senders; ++s) {
    sending.emplace_back([&, s] {
      auto stub = v1::ReferralService::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
      for (int64_t k = 0;; ++k) {
        const int64_t global = k * senders + s;
        if (rate > 0) {
          const absl::Time due = start + absl::Seconds(global / rate);
          if (due >= end) return;
          const absl::Time now = absl::Now();
          if (due > now) absl::SleepFor(due - now);
        } else if (absl::Now() >= end) {
          return;
        }
        const std::string id = absl::StrCat("d-", s, "-", k);
        v1::SubmitReferralRequest req =
            hub->Referral(id, absl::StrCat("bench-", s), ids[global % agencies]);
        grpc::ClientContext ctx;
        ctx.AddMetadata("x-careloop-dev-agency", "org.stmarys");
        v1::SubmitReferralResponse resp;
        const absl::Time sent = absl::Now();
        grpc::Status st = stub->Submit(&ctx, req, &resp);
        const absl::Time done = absl::Now();
        if (!st.ok()) {
          if (errors.fetch_add(1) < 3) std::fprintf(stderr, "%s\n", st.error_message().c_str());
          continue;
        }
        ++submitted;
        absl::MutexLock lock(&mu);
        times[id].sent = sent;
        times[id].acked = done;
      }
    });
  }
  for (auto& t : sending) t.join();
  const absl::Duration sending_took = absl::Now() - start;
  // Wait (bounded) for the last deliveries and acks.
  {
    absl::MutexLock lock(&mu);
    auto all_acked = [&] { return acked.load() >= submitted.load(); };
    mu.AwaitWithTimeout(absl::Condition(&all_acked), absl::Seconds(30));
  }
  const absl::Duration all_took = absl::Now() - start;
  for (auto& c : contexts) c->TryCancel();
  for (auto& t : readers) t.join();

  std::vector<double> after_ack, after_send, full_cycle;
  int64_t early = 0;
  {
    absl::MutexLock lock(&mu);
    for (const auto& [id, t] : times) {
      if (t.acked == absl::Time() || t.received == absl::Time()) continue;
      const double ms = absl::ToDoubleMilliseconds(t.received - t.acked);
      if (ms < 0) ++early;  // delivered before the sender had its answer
      after_ack.push_back(std::max(0.0, ms));
      after_send.push_back(absl::ToDoubleMilliseconds(t.received - t.sent));
      if (t.ack_done != absl::Time())
        full_cycle.push_back(absl::ToDoubleMilliseconds(t.ack_done - t.sent));
    }
  }
  std::printf("agencies %d, senders %d, target %s/s for %.0f s\n", agencies, senders,
              rate > 0 ? absl::StrCat(rate).c_str() : "max", seconds);
  std::printf(
      "submitted %lld (%.0f/s), delivered %lld, acknowledged %lld (%.0f/s end to end), "
      "errors %lld\n",
      static_cast<long long>(submitted.load()),
      submitted.load() / absl::ToDoubleSeconds(sending_took),
      static_cast<long long>(received.load()), static_cast<long long>(acked.load()),
      acked.load() / absl::ToDoubleSeconds(all_took), static_cast<long long>(errors.load()));
  std::printf(
      "submit acknowledged -> received: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
      "(%lld of %zu arrived before the sender's answer: counted as 0)\n",
      Pct(after_ack, 0.5), Pct(after_ack, 0.99), Pct(after_ack, 1.0), static_cast<long long>(early),
      after_ack.size());
  std::printf("submit sent -> received: p50 %.2f ms, p99 %.2f ms\n", Pct(after_send, 0.5),
              Pct(after_send, 0.99));
  std::printf("submit sent -> recipient's ack done: p50 %.2f ms, p99 %.2f ms\n",
              Pct(full_cycle, 0.5), Pct(full_cycle, 0.99));
  notes.Stop();
  server->Shutdown();
  hub.reset();
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
