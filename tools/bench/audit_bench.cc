// Audit at scale: a ledger of `--events` events (10M by default) in which
// `--subjects` people each have a consent trail (a grant through the real
// consent core, then disclosures spread over the whole log); the rest is
// other traffic. Measured: the consent trail (AuditCore::Trail, compliance)
// and a subject query for random subjects, p50/p99; then the offline
// verification rate of an export bundle next to raw SHA-256 over the same
// bytes in the same run.
//
// The bulk load appends 1000 events per append, 8 appends in flight.
//
//   audit_bench [--events 10000000] [--subjects 10000] [--queries 1000] [--dir DIR]
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/runtime.h"
#include "base/sha256.h"
#include "services/audit/audit_core.h"
#include "services/audit/bundle.h"
#include "services/names/names.h"
#include "tools/bench/bench_hub.h"
#include "tools/bench/bench_main.h"

using namespace careloop;

namespace {

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"audit trail queries at 10M events; bundle verification vs raw SHA-256"};
  uint64_t events = 10'000'000;
  int subjects = 10'000, queries = 1000;
  std::string dir;
  app.add_option("--events", events, "events in the ledger");
  app.add_option("--subjects", subjects, "people with a consent trail");
  app.add_option("--queries", queries, "trail queries timed");
  app.add_option("--dir", dir, "scratch directory (default: a temp dir)");
  CLI11_PARSE(app, argc, argv);
  log::Init(log::Level::kWarn, log::Format::kLogfmt);
  bench::Scratch scratch(dir, "auditbench");
  dir = scratch.path();

  auto hub = std::make_unique<bench::BenchHub>(dir);
  hub->Register("org.stmarys", "sender");
  hub->Register("org.foodbank", "receiver");
  hub->Register("org.compliance", "compliance");
  // Subjects with a consent each, through the real signed path.
  std::vector<std::string> ids;
  const absl::Time t0 = absl::Now();
  for (int s = 0; s < subjects; ++s) {
    hub->GrantNetworkConsent(absl::StrCat("mrn-", s));
    v1::ResolveSubjectRequest rq;
    rq.add_identifiers()->set_authority("org.stmarys/mrn");
    rq.mutable_identifiers(0)->set_value(absl::StrCat("mrn-", s));
    ids.push_back(hub->consent->Resolve(rq, policy::Caller::Agency("org.stmarys"))->subject_id());
  }
  std::fprintf(stderr, "%d subjects with consents in %.1f s\n", subjects,
               absl::ToDoubleSeconds(absl::Now() - t0));

  // The bulk: batches of 1000 events, 1 in 10 a disclosure for a random
  // subject, the rest other traffic; several appends in flight.
  std::mt19937_64 rng(42);
  const absl::Time t1 = absl::Now();
  std::atomic<int> in_flight{0};
  std::atomic<bool> failed{false};
  uint64_t written = hub->ledger->size();
  const std::string filler(200, 'f');
  while (written < events && !failed.load()) {
    v1::AppendRequest req;
    for (int i = 0; i < 1000 && written < events; ++i, ++written) {
      v1::EventInput* e = req.add_events();
      if (rng() % 10 == 0) {
        const std::string& s = ids[rng() % ids.size()];
        v1::DisclosureRecorded d;
        d.set_subject_id(s);
        d.set_recipient_agency("org.foodbank");
        d.set_disclosing_agency("org.stmarys");
        d.add_categories("social-needs");
        d.set_record_type("referral");
        d.set_record_id(absl::StrCat("org.stmarys/b-", written));
        d.set_purpose("care-coordination");
        d.set_authority("consent");
        e->set_stream(names::stream::Disclosure(s));
        e->set_type(names::event::kDisclosureRecorded);
        e->set_subject(s);
        e->add_agencies("org.foodbank");
        e->set_payload(d.SerializeAsString());
      } else {
        e->set_stream(absl::StrCat("traffic/", rng() % 100000));
        e->set_type("Traffic");
        e->set_payload(filler);
      }
    }
    while (in_flight.load() >= 8) std::this_thread::yield();
    ++in_flight;
    hub->ledger->AppendAsync(std::move(req), [&](const absl::StatusOr<v1::Commit>& c) {
      if (!c.ok()) {
        std::fprintf(stderr, "append failed: %s\n", std::string(c.status().message()).c_str());
        failed = true;
      }
      --in_flight;
    });
  }
  while (in_flight.load() > 0) std::this_thread::yield();
  CARELOOP_CHECK(!failed.load());
  std::fprintf(stderr, "%llu events in %.1f s\n",
               static_cast<unsigned long long>(hub->ledger->size()),
               absl::ToDoubleSeconds(absl::Now() - t1));

  audit::AuditCore audit(hub->ledger.get(), hub->state.get(), hub->consent.get(), SystemClock());
  const policy::Caller officer = policy::Caller::Agency("org.compliance");
  std::vector<double> trail_ms, query_ms;
  size_t entries = 0;
  for (int q = 0; q < queries; ++q) {
    const std::string& s = ids[rng() % ids.size()];
    v1::TrailRequest t;
    t.set_subject_id(s);
    absl::Time a = absl::Now();
    auto trail = audit.Trail(t, officer);
    trail_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
    CARELOOP_CHECK(trail.ok());
    entries += trail->entries_size();
    v1::AuditQueryRequest qr;
    qr.set_subject_id(s);
    qr.set_event_type(names::event::kDisclosureRecorded);
    qr.set_limit(1000);
    a = absl::Now();
    auto page = audit.Query(qr, officer);
    query_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
    CARELOOP_CHECK(page.ok());
  }
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  std::printf("ledger: %llu events, %d subjects, %.0f trail entries per subject on average\n",
              static_cast<unsigned long long>(hub->ledger->size()), subjects,
              static_cast<double>(entries) / queries);
  std::printf(
      "consent trail (Trail, recorded): p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d queries)\n",
      Pct(trail_ms, 0.5), Pct(trail_ms, 0.99), Pct(trail_ms, 1.0), queries);
  std::printf("subject query (Query, disclosures, recorded): p50 %.2f ms, p99 %.2f ms\n",
              Pct(query_ms, 0.5), Pct(query_ms, 0.99));

  // Bundle verification: export about the last 40 000 events as a period.
  v1::ReadRequest last;
  last.set_from_seq(hub->ledger->size() - 40'000);
  last.set_limit(1);
  const int64_t from = hub->ledger->Read(last)->events(0).header().commit_time_unix_nanos();
  v1::ExportRequest ex;
  ex.set_from_unix_nanos(from);
  ex.set_to_unix_nanos(absl::ToUnixNanos(absl::Now() + absl::Hours(1)));
  ex.set_include_payloads(true);
  absl::Time a = absl::Now();
  auto bundle = audit.Export(ex, officer);
  if (!bundle.ok())
    std::fprintf(stderr, "export: %s\n", std::string(bundle.status().message()).c_str());
  CARELOOP_CHECK(bundle.ok());
  const double export_s = absl::ToDoubleSeconds(absl::Now() - a);
  auto verifier = trust::Ed25519NoteVerifier::FromVerifierKey(hub->signer.VerifierKey());
  a = absl::Now();
  audit::BundleReport report = audit::VerifyBundle(*bundle, **verifier);
  const double verify_s = absl::ToDoubleSeconds(absl::Now() - a);
  CARELOOP_CHECK(report.ok);
  // Raw SHA-256 over the same bytes (headers and payloads), one thread.
  std::vector<std::string> blobs;
  size_t bytes = 0;
  for (const auto& l : bundle->lines()) {
    if (l.line_case() != v1::BundleLine::kEvent) continue;
    blobs.push_back(l.event().header_bytes());
    blobs.push_back(l.event().payload());
    bytes += blobs[blobs.size() - 2].size() + blobs.back().size();
  }
  a = absl::Now();
  uint8_t sink = 0;
  for (const auto& b : blobs) sink ^= Sha256(b)[0];
  const double sha_s = absl::ToDoubleSeconds(absl::Now() - a);
  std::printf("export of %llu events: %.2f s\n", static_cast<unsigned long long>(report.events),
              export_s);
  std::printf(
      "bundle verification: %.0f events/s (%llu events, %.1f MiB, every inclusion proof, %llu "
      "envelope signatures)\nraw SHA-256 of the same bytes, one thread: %.0f events/s (%.0f "
      "MiB/s); verification at %.1f %% of it%s\n",
      report.events / verify_s, static_cast<unsigned long long>(report.events), bytes / 1048576.0,
      static_cast<unsigned long long>(report.envelopes), report.events / sha_s,
      bytes / 1048576.0 / sha_s, 100.0 * sha_s / verify_s, sink == 0xff ? " " : "");
  hub.reset();
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
