// Consent decisions at scale: loads subjects and consents through the real
// ConsentCore (signed envelopes, verified, appended with fsync), then measures
// Check latency in-process on random subjects.
//
//   consent_bench [--subjects 100000] [--consents-per-subject 10] [--checks 200000]
//                 [--dir DIR] [--keep]
// With --dir of an earlier --keep run, loading is skipped.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/runtime.h"
#include "base/status.h"
#include "services/consent/consent_core.h"
#include "services/directory/directory.h"
#include "services/trust/head_signer.h"
#include "storage/local_ledger.h"
#include "tools/bench/bench_main.h"

using namespace careloop;

namespace {

constexpr std::array<const char*, 5> kRecipients = {"org.foodbank", "org.shelter", "org.clinic",
                                                    "org.transit", "org.housing"};

std::string Sign(const google::protobuf::Message& payload, const std::string& sender,
                 const std::string& role, const trust::Ed25519PrivateKey& key,
                 const std::string& key_id, const std::string& user,
                 const std::string& message_id) {
  v1::Actor actor;
  actor.set_user_id(user);
  actor.set_role(role);
  v1::Envelope e = trust::NewEnvelope(payload, sender, actor, key_id, absl::Now(), message_id);
  return *trust::SignEnvelope(e, key);
}

// One of a few realistic shapes, chosen by `n`.
v1::Consent MakeConsent(const std::string& subject, uint32_t n) {
  v1::Consent c;
  c.set_subject_id(subject);
  c.mutable_grantor()->set_kind(n % 7 == 0 ? v1::GRANTOR_PARENT_GUARDIAN : v1::GRANTOR_SUBJECT);
  if (n % 7 == 0) c.mutable_grantor()->set_relationship("mother");
  v1::ConsentRule* root = c.mutable_provision();
  root->set_permit(true);
  switch (n % 4) {
    case 0:
      root->add_recipients()->set_network(true);
      break;
    case 1:
      root->add_recipients()->set_agency_kind(v1::COMMUNITY_AGENCY);
      break;
    default:
      root->add_recipients()->set_agency_id(kRecipients[n % kRecipients.size()]);
      root->add_recipients()->set_agency_id(kRecipients[(n / 5) % kRecipients.size()]);
  }
  root->add_purposes("care-coordination");
  if (n % 3 == 0) root->add_purposes("treatment");
  root->add_categories("contact");
  root->add_categories("social-needs");
  if (n % 5 == 0) root->add_categories("behavioral-health");
  v1::ConsentRule* deny = root->add_exceptions();
  deny->add_categories("contact");
  deny->add_recipients()->set_agency_id(kRecipients[(n / 3) % kRecipients.size()]);
  if (n % 2 == 0) {
    c.mutable_period()->set_end_unix_nanos(absl::ToUnixNanos(absl::Now() + absl::Hours(24 * 365)));
  }
  c.mutable_evidence()->set_sha256(std::string(32, static_cast<char>(n)));
  c.mutable_evidence()->set_media_type("application/pdf");
  return c;
}

double Micros(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }

}  // namespace

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"consent Check latency with many consents"};
  int subjects = 100000, per_subject = 10, checks = 200000, threads = 32;
  std::string dir;
  bool keep = false;
  app.add_option("--subjects", subjects, "subjects");
  app.add_option("--consents-per-subject", per_subject, "consents per subject");
  app.add_option("--checks", checks, "Check calls measured");
  app.add_option("--load-threads", threads, "concurrent submitters while loading");
  app.add_option("--dir", dir, "data directory (default: a temp dir, removed)");
  app.add_flag("--keep", keep, "keep the data directory");
  size_t cache_mb = 64;
  app.add_option("--block-cache-mb", cache_mb, "RocksDB block cache (careloopd --block-cache-mb)");
  CLI11_PARSE(app, argc, argv);
  log::Init(log::Level::kWarn, log::Format::kLogfmt);
  namespace fs = std::filesystem;
  const bool temp = dir.empty();
  if (temp)
    dir = (fs::temp_directory_path() / absl::StrCat("careloop-consent-", getpid())).string();
  const bool fresh = !fs::exists(dir + "/ledger");
  fs::create_directories(dir);

  auto log_key = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x07'));
  auto admin_key = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0a'));
  auto agency_key = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b'));
  trust::Ed25519HeadSigner signer("careloop.bench", std::move(log_key));
  storage::LedgerOptions lo;
  lo.dir = dir + "/ledger";
  lo.signer = &signer;
  lo.block_cache_bytes = cache_mb << 20;
  auto ledger = storage::LocalLedger::Open(lo);
  if (!ledger.ok()) {
    std::fprintf(stderr, "%s\n", ledger.status().ToString().c_str());
    return 1;
  }
  directory::HubAdmin admin;
  admin.public_key = admin_key.public_key().raw();
  directory::DirectoryState state(admin);
  storage::ProjectionRunner runner(ledger->get(), &state);
  CARELOOP_CHECK(runner.Start().ok());
  CARELOOP_CHECK(runner.WaitFor((*ledger)->size(), absl::Minutes(10)).ok());
  directory::DirectoryCore directory(ledger->get(), &state, &runner, SystemClock());
  consent::ConsentOptions co;
  std::atomic<uint64_t> next_subject{0};
  co.new_subject_id = [&] { return absl::StrCat("s-", next_subject.fetch_add(1)); };
  consent::ConsentCore core(ledger->get(), &state, &runner, SystemClock(), co);

  std::vector<std::string> all_recipients(kRecipients.begin(), kRecipients.end());
  all_recipients.push_back("org.stmarys");
  if (fresh) {
    const absl::Time t0 = absl::Now();
    for (const std::string& id : all_recipients) {
      v1::RegisterAgency r;
      r.set_agency_id(id);
      r.mutable_profile()->set_display_name(id);
      r.mutable_profile()->set_kind(
          id == "org.stmarys" || id == "org.clinic" ? v1::HOSPITAL : v1::COMMUNITY_AGENCY);
      r.mutable_initial_key()->set_key_id("k1");
      r.mutable_initial_key()->set_public_key(agency_key.public_key().raw());
      v1::ActorEntry* a = r.add_actors();
      a->set_user_id("u-1");
      a->add_roles("sender");
      CARELOOP_CHECK(directory
                         .Submit(Sign(r, directory::kHubAgency, directory::kHubAdminRole, admin_key,
                                      "hub-admin-1", "hub-admin", "reg-" + id))
                         .ok());
    }
    // Subjects, then consents, from `threads` concurrent submitters.
    std::atomic<int> next{0};
    auto run = [&](auto&& fn) {
      std::vector<std::thread> ts;
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&] {
          for (int i; (i = next.fetch_add(1)) < subjects;) fn(i);
        });
      for (auto& t : ts) t.join();
      next = 0;
    };
    run([&](int i) {
      v1::ResolveSubjectRequest req;
      v1::Identifier* id = req.add_identifiers();
      id->set_authority("org.stmarys/mrn");
      id->set_value(absl::StrCat(i));
      CARELOOP_CHECK(core.Resolve(req, policy::Caller::Agency("org.stmarys")).ok());
    });
    const absl::Time t1 = absl::Now();
    std::printf("loaded %d subjects in %.1f s (%.0f/s)\n", subjects, absl::ToDoubleSeconds(t1 - t0),
                subjects / absl::ToDoubleSeconds(t1 - t0));
    run([&](int i) {
      const std::string s = absl::StrCat("s-", i);
      for (int k = 0; k < per_subject; ++k) {
        v1::GrantConsent g;
        *g.mutable_consent() = MakeConsent(s, static_cast<uint32_t>(i * per_subject + k));
        absl::StatusOr<v1::SubmitEnvelopeResponse> r = core.Submit(Sign(
            g, "org.stmarys", "sender", agency_key, "k1", "u-1", absl::StrCat("g-", i, "-", k)));
        if (!r.ok()) {
          std::fprintf(stderr, "grant: %s\n", r.status().ToString().c_str());
          bench::Die();
        }
      }
    });
    const absl::Time t2 = absl::Now();
    const double n = static_cast<double>(subjects) * per_subject;
    std::printf(
        "loaded %.0f consents through ConsentCore::Submit in %.1f s (%.0f grants/s), "
        "ledger %llu events\n",
        n, absl::ToDoubleSeconds(t2 - t1), n / absl::ToDoubleSeconds(t2 - t1),
        static_cast<unsigned long long>((*ledger)->size()));
  } else {
    std::printf("reusing %s (%llu events)\n", dir.c_str(),
                static_cast<unsigned long long>((*ledger)->size()));
  }

  // Check: random subject, recipient and category mix; warm up first.
  std::mt19937 rng(20261128);
  const std::vector<std::vector<std::string>> mixes = {
      {"contact", "social-needs"}, {"social-needs", "clinical", "behavioral-health"}, {"contact"}};
  auto one = [&](std::mt19937& r) {
    v1::CheckConsentRequest req;
    req.set_subject_id(absl::StrCat("s-", r() % subjects));
    req.set_recipient_agency(kRecipients[r() % kRecipients.size()]);
    req.set_purpose("care-coordination");
    for (const auto& c : mixes[r() % mixes.size()]) req.add_categories(c);
    return req;
  };
  int permits = 0;
  for (int i = 0; i < std::min(checks / 10, 20000); ++i) CARELOOP_CHECK(core.Decide(one(rng)).ok());
  std::vector<double> lat;
  lat.reserve(checks);
  const absl::Time start = absl::Now();
  for (int i = 0; i < checks; ++i) {
    v1::CheckConsentRequest req = one(rng);
    const absl::Time a = absl::Now();
    absl::StatusOr<v1::CheckConsentResponse> r = core.Decide(req);
    lat.push_back(Micros(absl::Now() - a));
    CARELOOP_CHECK(r.ok());
    permits += r->decisions(0).permit();
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat[static_cast<size_t>(p * (lat.size() - 1))]; };
  std::printf(
      "| Check, 1 thread, block cache %zu MiB | %d subjects x %d consents | %.0f checks/s | p50 "
      "%.1f µs | p90 %.1f µs | p99 %.1f µs | max %.1f µs | first category permitted %.0f%% |\n",
      cache_mb, subjects, per_subject, checks / secs, pct(0.5), pct(0.9), pct(0.99), lat.back(),
      100.0 * permits / checks);
  // Two threads: throughput on both cores.
  std::atomic<int> done{0};
  const absl::Time s2 = absl::Now();
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 r(t + 1);
      while (done.fetch_add(1) < checks) CARELOOP_CHECK(core.Decide(one(r)).ok());
    });
  for (auto& t : ts) t.join();
  std::printf("| Check, 2 threads | | %.0f checks/s |\n",
              checks / absl::ToDoubleSeconds(absl::Now() - s2));
  runner.Stop();
  CARELOOP_CHECK((*ledger)->Close().ok());
  if (temp && !keep) fs::remove_all(dir);
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
