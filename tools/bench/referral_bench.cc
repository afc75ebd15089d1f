// Sustained signed referral submissions over gRPC (fsync on), next to a
// ceiling measured in the same run with the same load generator: a bare gRPC
// server that only verifies each request's signature and appends nothing.
// Every request is signed by the load generator (1 KiB of sections, two
// sections); each client has its own subject with a consent, so every
// submission takes the real path: verify, route, decide consent, record two
// disclosures, append with fsync.
//
//   referral_bench [--seconds 5] [--clients 1,16,64] [--channels 4] [--repeat 3] [--dir DIR]
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/runtime.h"
#include "base/status.h"
#include "services/common/grpc_edge.h"
#include "services/names/names.h"
#include "services/referral/referral_grpc_service.h"
#include "services/referral/sections.h"
#include "tools/bench/bench_hub.h"
#include "tools/bench/bench_main.h"

using namespace careloop;

namespace {

// The ceiling: parse the envelope and verify its signature; nothing else.
class VerifyOnly final : public v1::ReferralService::CallbackService {
 public:
  explicit VerifyOnly(trust::Ed25519PublicKey key) : key_(std::move(key)) {}
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitReferralRequest* req,
                                   v1::SubmitReferralResponse* resp) override {
    return FinishUnary(ctx, absl::OkStatus(), resp,
                       [&]() -> absl::StatusOr<v1::SubmitReferralResponse> {
                         absl::StatusOr<v1::Envelope> e =
                             trust::ParseEnvelope(req->envelope(), trust::EnvelopeLimits());
                         if (!e.ok()) return e.status();
                         if (!key_.Verify(trust::SigningInput(*e), e->signature()))
                           return absl::UnauthenticatedError("bad signature");
                         return v1::SubmitReferralResponse();
                       });
  }

 private:
  trust::Ed25519PublicKey key_;
};

// The design's least: what DESIGN.md step 5 makes any submission append,
// with nothing else around it. Verify on gRPC's own thread (as the ceiling
// does), then one append of four events — ReferralSubmitted with the
// signed envelope and the sections, ReferralRouted, one DisclosureRecorded
// per section — with the referral stream required new, answered from the
// ledger's callback with the commit and the receipt: no pool, no routing, no
// consent reads, no duplicate check. The hub cannot be faster than this; the
// row says how much of the ceiling the ledger as designed leaves.
class VerifyAndAppend final : public v1::ReferralService::CallbackService {
 public:
  VerifyAndAppend(trust::Ed25519PublicKey key, storage::LocalLedger* ledger)
      : key_(std::move(key)), ledger_(ledger) {}
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitReferralRequest* req,
                                   v1::SubmitReferralResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::StatusOr<v1::Envelope> e = trust::ParseEnvelope(req->envelope(), trust::EnvelopeLimits());
    if (!e.ok()) {
      reactor->Finish(ToGrpcStatus(e.status()));
      return reactor;
    }
    if (!key_.Verify(trust::SigningInput(*e), e->signature())) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad signature"));
      return reactor;
    }
    const std::string stream = names::stream::Referral(e->sender_agency(), e->message_id());
    v1::AppendRequest a;
    a.set_idempotency_key(names::stream::SubmitKey(e->sender_agency(), e->message_id()));
    v1::Precondition* pre = a.add_preconditions();
    pre->set_stream(stream);
    pre->set_must_not_exist(true);
    auto event = [&](const char* type, std::string payload) {
      v1::EventInput* in = a.add_events();
      in->set_stream(stream);
      in->set_type(type);
      in->add_agencies(e->sender_agency());
      in->add_agencies("org.foodbank");
      in->set_subject("subject-of-" + e->sender_agency());
      in->set_payload(std::move(payload));
    };
    std::string submitted = req->envelope();
    for (const v1::Section& s : req->sections()) submitted += s.SerializeAsString();
    event(names::event::kReferralSubmitted, std::move(submitted));
    event(names::event::kReferralRouted, std::string(64, 'r'));
    for (const v1::Section& s : req->sections())
      event(names::event::kDisclosureRecorded, s.section_id());
    ledger_->AppendAsync(std::move(a), [this, reactor, resp](absl::StatusOr<v1::Commit> c) {
      if (!c.ok()) {
        reactor->Finish(ToGrpcStatus(c.status()));
        return;
      }
      absl::StatusOr<v1::Receipt> r = ledger_->GetReceipt(c->first_seq());
      const absl::Status got = r.status();
      if (r.ok()) *resp->mutable_receipt() = *std::move(r);
      reactor->Finish(ToGrpcStatus(got));
    });
    return reactor;
  }

 private:
  trust::Ed25519PublicKey key_;
  storage::LocalLedger* ledger_;
};

struct Row {
  double rate = 0, p50 = 0, p99 = 0;
  double cpu_us = 0;  // process CPU (user + system, every thread) per request
  double events = 0, rounds = 0, syncs = 0;  // the ledger's, per request (hub rows)
  int errors = 0;
};

double ProcessCpuSeconds() {
  rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

// `clients` threads over `channels` channels, each signing and sending
// referrals for `seconds`.
Row Load(const std::string& address, int clients, int channels, double seconds,
         bench::BenchHub* hub, const std::string& tag, storage::LocalLedger* counted = nullptr) {
  std::vector<std::shared_ptr<grpc::Channel>> chans;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct channels, not one shared subchannel
    chans.push_back(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(clients);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::ReferralService::NewStub(chans[c % channels]);
      for (int n = 0; !stop.load(); ++n) {
        v1::SubmitReferralRequest req = hub->Referral(absl::StrCat(tag, "-", c, "-", n),
                                                      absl::StrCat("bench-", c), "org.foodbank");
        const absl::Time t0 = absl::Now();
        grpc::ClientContext ctx;
        v1::SubmitReferralResponse resp;
        grpc::Status st = stub->Submit(&ctx, req, &resp);
        if (!st.ok()) {
          if (errors.fetch_add(1) < 3) std::fprintf(stderr, "%s\n", st.error_message().c_str());
          continue;
        }
        lat[c].push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      }
    });
  }
  // The ledger whose work is counted per request (none for the ceiling).
  storage::LocalLedger& ledger = counted != nullptr ? *counted : *hub->ledger;
  const double cpu0 = ProcessCpuSeconds();
  const double e0 = ledger.events_written(), r0 = ledger.rounds(), s0 = ledger.syncs();
  absl::SleepFor(absl::Seconds(seconds));
  const double cpu = ProcessCpuSeconds() - cpu0;
  const double events = ledger.events_written() - e0, rounds = ledger.rounds() - r0,
               syncs = ledger.syncs() - s0;
  stop = true;
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  Row r;
  r.errors = errors;
  if (all.empty()) return r;
  r.rate = all.size() / seconds;
  r.cpu_us = 1e6 * cpu / static_cast<double>(all.size());
  r.events = events / all.size();
  r.rounds = rounds / all.size();
  r.syncs = syncs / all.size();
  r.p50 = all[all.size() / 2];
  r.p99 = all[static_cast<size_t>(0.99 * (all.size() - 1))];
  return r;
}

double FsyncP50(const std::string& dir) {
  const std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  std::string block(1024, 'f');
  std::vector<double> t;
  for (int i = 0; i < 500; ++i) {
    const absl::Time a = absl::Now();
    if (::write(fd, block.data(), block.size()) < 0 || ::fdatasync(fd) != 0) break;
    t.push_back(absl::ToDoubleMicroseconds(absl::Now() - a));
  }
  ::close(fd);
  std::filesystem::remove(path);
  std::sort(t.begin(), t.end());
  return t.empty() ? 0 : t[t.size() / 2];
}

}  // namespace

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"referral submissions over gRPC vs a verify-only ceiling"};
  double seconds = 5;
  std::string clients_list = "1,16,64", dir;
  int channels = 4;
  app.add_option("--seconds", seconds, "seconds per row");
  app.add_option("--clients", clients_list, "comma list of client counts");
  app.add_option("--channels", channels, "gRPC channels the clients share");
  app.add_option("--dir", dir, "scratch directory on the disk to measure (default: a temp dir)");
  bool pool_submit = false;
  app.add_flag("--pool-submit", pool_submit,
               "the hub takes every submission on its handler pool (as against a remote ledger)");
  int repeat = 1;
  app.add_option("--repeat", repeat, "measurements per client count (ratios within each)")
      ->check(CLI::PositiveNumber);
  std::string only;
  app.add_option("--only", only, "measure one server alone, for profiling")
      ->check(CLI::IsMember({"hub", "least"}));
  CLI11_PARSE(app, argc, argv);
  log::Init(log::Level::kWarn, log::Format::kLogfmt);
  bench::Scratch scratch(dir, "refbench");
  dir = scratch.path();

  auto hub_cores = std::make_unique<bench::BenchHub>(dir);
  hub_cores->Register("org.stmarys", "sender");
  hub_cores->Register("org.foodbank", "receiver");
  std::vector<int> counts;
  for (absl::string_view c : absl::StrSplit(clients_list, ','))
    counts.push_back(std::stoi(std::string(c)));
  const int max_clients = *std::max_element(counts.begin(), counts.end());
  // One subject with a consent per client.
  for (int c = 0; c < max_clients; ++c) hub_cores->GrantNetworkConsent(absl::StrCat("bench-", c));

  auto serve = [](grpc::Service* service, std::string* address) {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service);
    auto server = b.BuildAndStart();
    *address = absl::StrCat("127.0.0.1:", port);
    return server;
  };
  referral::ReferralGrpcService hub_service(hub_cores->referrals.get(), hub_cores->state.get(),
                                            /*tls=*/false, /*submit_inline=*/!pool_submit);
  VerifyOnly ceiling_service(hub_cores->agency_key.public_key());
  // The design's least gets a ledger of its own, so that nothing else tails it.
  trust::Ed25519HeadSigner least_signer(
      "careloop.bench.least", *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x08')));
  storage::LedgerOptions least_options;
  least_options.dir = dir + "/least";
  least_options.signer = &least_signer;
  std::unique_ptr<storage::LocalLedger> least_ledger = *storage::LocalLedger::Open(least_options);
  VerifyAndAppend least_service(hub_cores->agency_key.public_key(), least_ledger.get());
  std::string hub_address, ceiling_address, least_address;
  auto hub = serve(&hub_service, &hub_address);
  auto ceiling = serve(&ceiling_service, &ceiling_address);
  auto least = serve(&least_service, &least_address);

  std::printf("fsync of 1 KiB on this disk: p50 %.0f µs\n\n", FsyncP50(dir));
  // Each repetition measures the three servers back to back, in an order
  // that rotates, and takes the ratios within the repetition: this machine's
  // speed drifts by tens of percent over a minute, and a ratio of two runs
  // far apart in time would measure the drift.
  struct Trial {
    Row ceiling, hub, least;
  };
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto ratio = [](const Row& r, const Row& ceil) {
    return ceil.rate > 0 ? 100.0 * r.rate / ceil.rate : 0.0;
  };
  // "median (min–max)" of a ratio over the trials.
  auto ratio_cell = [&](const std::vector<Trial>& trials, Row Trial::*which) {
    std::vector<double> v;
    for (const Trial& t : trials) v.push_back(ratio(t.*which, t.ceiling));
    if (v.empty() || v[0] == 0) return std::string("-");
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return trials.size() == 1
               ? absl::StrCat(static_cast<int>(v[0] + 0.5), " %")
               : absl::StrCat(static_cast<int>(median(v) + 0.5), " % (",
                              static_cast<int>(*lo + 0.5), "–", static_cast<int>(*hi + 0.5), ")");
  };
  auto med = [&](const std::vector<Trial>& trials, Row Trial::*which, double Row::*field) {
    std::vector<double> v;
    for (const Trial& t : trials) v.push_back(t.*which.*field);
    return median(v);
  };
  std::vector<std::pair<int, std::vector<Trial>>> results;
  int run = 0;
  for (int clients : counts) {
    std::vector<Trial> trials(repeat);
    for (int k = 0; k < repeat; ++k) {
      Trial& t = trials[k];
      for (int step = 0; step < 3; ++step) {
        const int which = (step + k) % 3;
        const std::string tag = absl::StrCat(run++);
        if (which == 0 && only.empty()) {
          t.ceiling = Load(ceiling_address, clients, channels, seconds, hub_cores.get(),
                           absl::StrCat("c", tag));
        } else if (which == 1 && only != "least") {
          t.hub = Load(hub_address, clients, channels, seconds, hub_cores.get(),
                       absl::StrCat("r", tag), hub_cores->ledger.get());
        } else if (which == 2 && only != "hub") {
          t.least = Load(least_address, clients, channels, seconds, hub_cores.get(),
                         absl::StrCat("m", tag), least_ledger.get());
        }
      }
    }
    results.emplace_back(clients, std::move(trials));
  }
  int errors = 0;
  for (const auto& [clients, trials] : results) {
    for (const Trial& t : trials) errors += t.ceiling.errors + t.hub.errors + t.least.errors;
  }
  std::printf(
      "%d repetition(s) of %.0f s per server and client count; medians, and the range "
      "of the ratios over the repetitions.\n\n",
      repeat, seconds);
  std::printf(
      "| clients | channels | submissions/s | p50 µs | p99 µs | CPU µs/submission "
      "| ceiling (verify only) /s | ceiling p50 µs | ceiling CPU µs/request | ratio "
      "|\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [clients, t] : results) {
    std::printf("| %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s |\n", clients,
                std::min(clients, channels), med(t, &Trial::hub, &Row::rate),
                med(t, &Trial::hub, &Row::p50), med(t, &Trial::hub, &Row::p99),
                med(t, &Trial::hub, &Row::cpu_us), med(t, &Trial::ceiling, &Row::rate),
                med(t, &Trial::ceiling, &Row::p50), med(t, &Trial::ceiling, &Row::cpu_us),
                ratio_cell(t, &Trial::hub).c_str());
  }
  std::printf(
      "\nThe ledger per submission (hub rows):\n\n| clients | events | commit rounds "
      "(one head signature each) | fsyncs |\n|---|---|---|---|\n");
  for (const auto& [clients, t] : results) {
    std::printf("| %d | %.2f | %.3f | %.3f |\n", clients, med(t, &Trial::hub, &Row::events),
                med(t, &Trial::hub, &Row::rounds), med(t, &Trial::hub, &Row::syncs));
  }
  if (only != "hub") {
    std::printf(
        "\nThe design's least (verify, then one append of the four events DESIGN.md's step 5 "
        "requires, fsync, receipt; nothing else):\n\n| clients | submissions/s | p50 µs | p99 "
        "µs | CPU µs/submission | commit rounds | ratio to the ceiling |\n|---|---|---|---|---|"
        "---|---|\n");
    for (const auto& [clients, t] : results) {
      std::printf("| %d | %.0f | %.0f | %.0f | %.0f | %.3f | %s |\n", clients,
                  med(t, &Trial::least, &Row::rate), med(t, &Trial::least, &Row::p50),
                  med(t, &Trial::least, &Row::p99), med(t, &Trial::least, &Row::cpu_us),
                  med(t, &Trial::least, &Row::rounds), ratio_cell(t, &Trial::least).c_str());
    }
  }
  if (errors > 0) std::printf("\nerrors: %d requests failed (first ones on stderr)\n", errors);
  hub->Shutdown();
  ceiling->Shutdown();
  least->Shutdown();
  CARELOOP_CHECK(least_ledger->Close().ok());
  hub_cores.reset();
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
