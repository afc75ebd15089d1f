// careloop audit query|trail|access|figures|report|proof|verify-proof|monitor|export|
// verify-bundle|fhir.
//
// verify-proof and verify-bundle work offline with only the hub's verifier
// key; monitor keeps the last head it accepted in a state file and fails
// loudly (exit 1) on a forged head, another log, a rollback, a fork or a
// rewritten history.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "careloop/v1/audit.grpc.pb.h"
#include "careloop/v1/consent.grpc.pb.h"
#include "services/audit/bundle.h"
#include "services/consent/report.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_consent.h"
#include "services/trust/head_signer.h"
#include "storage/merkle.h"
#include "storage/receipt.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

template <typename Req, typename Resp, typename Method, typename TextFn>
void Call(Globals& g, Method method, const Req& req, TextFn text) {
  CallUnary<v1::AuditService, Req, Resp>(g, method, req, text);
}

// A person's export for compliance: their consents (FHIR Consent) and every
// disclosure of their records (FHIR AuditEvent: who, the human who
// disclosed, the purpose of use), as one Bundle of type collection.
absl::StatusOr<nlohmann::json> FhirExport(const Globals& g, const v1::FhirAuditEventsRequest& req) {
  v1::ListConsentsRequest list;
  list.set_subject_id(req.subject_id());
  grpc::ClientContext consent_ctx;
  Prepare(g, &consent_ctx);
  v1::ListConsentsResponse consents;
  grpc::Status st =
      v1::ConsentService::NewStub(Connect(g))->ListConsents(&consent_ctx, list, &consents);
  if (!st.ok()) return FromGrpcStatus(st);
  grpc::ClientContext audit_ctx;
  Prepare(g, &audit_ctx);
  v1::FhirAuditEventsResponse events;
  st = v1::AuditService::NewStub(Connect(g))->FhirAuditEvents(&audit_ctx, req, &events);
  if (!st.ok()) return FromGrpcStatus(st);
  nlohmann::json entries = nlohmann::json::array();
  const nlohmann::json person{{"system", edge::fhir::kSubjectSystem},
                              {"value", consents.subject_id()}};
  for (const v1::ConsentRecord& c : consents.consents())
    entries.push_back({{"resource", edge::fhir::FhirConsentOf(c.consent(), person)}});
  for (const std::string& e : events.audit_events_json())
    entries.push_back({{"resource", nlohmann::json::parse(e)}});
  return nlohmann::json{
      {"resourceType", "Bundle"},
      {"type", "collection"},
      {"timestamp", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())},
      {"entry", std::move(entries)}};
}

void PrintFhirExport(Globals& g, const v1::FhirAuditEventsRequest& req) {
  absl::StatusOr<nlohmann::json> bundle = FhirExport(g, req);
  if (!bundle.ok()) {
    g.exit_code = Fail(bundle.status());
    return;
  }
  std::cout << bundle->dump(2) << "\n";
}

absl::StatusOr<std::unique_ptr<trust::Ed25519NoteVerifier>> Verifier(const std::string& vkey) {
  return trust::Ed25519NoteVerifier::FromFile(vkey);
}

void PrintEvents(const v1::AuditQueryResponse& r) {
  for (const v1::Event& e : r.events()) {
    const auto& h = e.header();
    std::cout << h.seq() << "  " << When(h.commit_time_unix_nanos()) << "  " << h.type() << "  "
              << h.stream();
    if (!h.agencies().empty()) std::cout << "  [" << absl::StrJoin(h.agencies(), ",") << "]";
    std::cout << "\n";
  }
  if (r.next_after_seq() != 0) std::cout << "(more: --after-seq " << r.next_after_seq() << ")\n";
}

struct QueryFlags {
  v1::AuditQueryRequest req;
  std::string from, to;
};

// The inclusion or consistency proof file `audit proof` writes, checked.
int VerifyProofFile(const std::string& path, const std::string& vkey) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return FailUsage(std::string(text.status().message()));
  absl::StatusOr<std::unique_ptr<trust::Ed25519NoteVerifier>> key = Verifier(vkey);
  if (!key.ok()) return FailUsage(std::string(key.status().message()));
  v1::AuditConsistencyResponse consistency;
  v1::Receipt receipt;
  if (text->find("\"proof\"") != std::string::npos &&
      text->find("\"head1\"") != std::string::npos && FromJson(*text, &consistency).ok()) {
    absl::StatusOr<storage::VerifiedConsistency> v = storage::VerifyConsistencyProof(
        consistency.head1(), consistency.head2(), consistency.proof(), **key);
    if (!v.ok()) {
      std::cout << "NOT VERIFIED: " << v.status().message() << "\n";
      return kVerifyFailed;
    }
    std::cout << "verified: the log of size " << v->head2.tree_size << " extends the log of size "
              << v->head1.tree_size << " (log id " << storage::LogIdOfOrigin(v->head1.origin)
              << ")\n";
    return kOk;
  }
  if (!FromJson(*text, &receipt).ok()) return FailUsage(path + " is neither proof kind");
  absl::StatusOr<v1::EventHeader> h = storage::VerifyReceipt(receipt, **key, std::nullopt);
  if (!h.ok()) {
    std::cout << "NOT VERIFIED: " << h.status().message() << "\n";
    return kVerifyFailed;
  }
  std::cout << "verified: event " << h->seq() << " (" << h->type() << ", " << h->stream()
            << ") is in the log of size " << receipt.head().tree_size() << "\n";
  return kOk;
}

int Monitor(Globals& g, const std::string& state_path, const std::string& vkey) {
  absl::StatusOr<std::unique_ptr<trust::Ed25519NoteVerifier>> key = Verifier(vkey);
  if (!key.ok()) return FailUsage(std::string(key.status().message()));
  std::optional<audit::MonitorState> last;
  if (std::ifstream in(state_path); in) {
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<audit::MonitorState> s = audit::MonitorStateFromText(ss.str());
    if (!s.ok()) return FailUsage(absl::StrCat(state_path, ": ", s.status().message()));
    last = *s;
  }
  auto stub = v1::AuditService::NewStub(Connect(g));
  v1::SignedHead head;
  {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    grpc::Status st = stub->Head(&ctx, v1::AuditHeadRequest(), &head);
    if (!st.ok()) return Fail(FromGrpcStatus(st));
  }
  v1::ConsistencyProof proof;
  if (last && head.tree_size() > last->tree_size) {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::AuditConsistencyRequest req;
    req.set_size1(last->tree_size);
    req.set_size2(head.tree_size());
    v1::AuditConsistencyResponse resp;
    grpc::Status st = stub->Consistency(&ctx, req, &resp);
    if (!st.ok()) return Fail(FromGrpcStatus(st));
    proof = resp.proof();
  }
  audit::MonitorResult r = audit::CheckHead(last, head, proof, **key);
  if (!r.ok) {
    std::cout << "ALERT: " << r.problem << "\n";
    std::cerr << "careloop: the log failed the monitor's check; keep " << state_path
              << " and this output as evidence\n";
    return kVerifyFailed;
  }
  std::ofstream(state_path, std::ios::trunc) << audit::MonitorStateToText(r.next);
  if (!last) {
    std::cout << "first head: log " << r.next.log_id << " size " << r.next.tree_size << "\n";
  } else {
    std::cout << "consistent: log " << r.next.log_id << " grew from " << last->tree_size << " to "
              << r.next.tree_size << "\n";
  }
  return kOk;
}

}  // namespace

void AddAuditCommands(CLI::App& app, Globals& g) {
  CLI::App* audit = app.add_subcommand("audit", "trails, proofs, monitoring, export bundles");
  audit->require_subcommand(1);

  auto qf = std::make_shared<QueryFlags>();
  CLI::App* query = audit->add_subcommand(
      "query", "events by subject, agency, referral, consent, type, actor, time (compliance)");
  query->add_option("--subject", *qf->req.mutable_subject_id(), "a subject id (merged ids too)");
  query->add_option("--agency", *qf->req.mutable_agency(), "events that concern an agency");
  query->add_option("--referral", *qf->req.mutable_referral(),
                    "SENDER/ID: a referral and its thread");
  query->add_option("--consent", *qf->req.mutable_consent_id(),
                    "a consent's events and the disclosures under it");
  query->add_option("--type", *qf->req.mutable_event_type(), "only this event type");
  query->add_option("--actor", *qf->req.mutable_actor(), "only envelopes signed by this user id");
  query->add_option("--from", qf->from, "from (RFC 3339)");
  query->add_option("--to", qf->to, "to (RFC 3339)");
  query->add_option(
      "--after-seq",
      [qf](const std::vector<std::string>& v) {
        qf->req.set_after_seq(std::stoull(v[0]));
        return true;
      },
      "the next page");
  query->add_option(
      "--limit",
      [qf](const std::vector<std::string>& v) {
        qf->req.set_limit(static_cast<uint32_t>(std::stoul(v[0])));
        return true;
      },
      "events per page (at most 1000)");
  query->add_flag(
      "--payloads", [qf](int64_t n) { qf->req.set_include_payloads(n > 0); },
      "include payloads (with --json)");
  query->callback([&g, qf] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, qf->from, qf->to, &from, &to)) return;
    qf->req.set_from_unix_nanos(from);
    qf->req.set_to_unix_nanos(to);
    Call<v1::AuditQueryRequest, v1::AuditQueryResponse>(g, &v1::AuditService::Stub::Query, qf->req,
                                                        PrintEvents);
  });

  auto trail_req = std::make_shared<v1::TrailRequest>();
  CLI::App* trail = audit->add_subcommand("trail", "a subject's consent trail (compliance)");
  trail->add_option("--subject", *trail_req->mutable_subject_id(), "the subject id")->required();
  trail->callback([&g, trail_req] {
    Call<v1::TrailRequest, v1::TrailResponse>(
        g, &v1::AuditService::Stub::Trail, *trail_req, [](const v1::TrailResponse& r) {
          std::cout << "subject " << r.subject_id();
          if (!r.merged().empty())
            std::cout << " (merged: " << absl::StrJoin(r.merged(), ", ") << ")";
          std::cout << "\n";
          for (const auto& e : r.entries()) {
            std::cout << e.seq() << "  " << When(e.at_unix_nanos()) << "  " << e.type() << "  "
                      << e.summary();
            if (!e.reason().empty()) std::cout << "  reason: " << e.reason();
            if (!e.by_user().empty()) std::cout << "  by " << e.by_agency() << "/" << e.by_user();
            std::cout << "\n";
          }
        });
  });

  struct AccessFlags {
    v1::AccessRequest req;
    std::string from, to;
  };
  auto af = std::make_shared<AccessFlags>();
  CLI::App* access = audit->add_subcommand(
      "access", "who read what: a subject's readers, one staff member, or a referral's");
  access->add_option("--subject", *af->req.mutable_subject_id(), "a subject id");
  access->add_option("--referral", *af->req.mutable_referral(), "SENDER/ID: who opened it");
  access->add_option("--actor", *af->req.mutable_actor(),
                     "a staff member's user id (with --agency)");
  access->add_option("--agency", *af->req.mutable_agency(), "the staff member's agency");
  access->add_option("--from", af->from, "from (RFC 3339)");
  access->add_option("--to", af->to, "to (RFC 3339)");
  access->callback([&g, af] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, af->from, af->to, &from, &to)) return;
    af->req.set_from_unix_nanos(from);
    af->req.set_to_unix_nanos(to);
    Call<v1::AccessRequest, v1::AccessResponse>(
        g, &v1::AuditService::Stub::Access, af->req, [](const v1::AccessResponse& r) {
          for (const auto& e : r.entries()) {
            std::cout << e.seq() << "  " << When(e.at_unix_nanos()) << "  " << e.agency() << "/"
                      << (e.actor().empty() ? "-" : e.actor()) << "  " << e.kind() << "  "
                      << e.what() << "  " << e.record_type();
            if (!e.record_id().empty()) std::cout << " " << e.record_id();
            for (const auto& sec : e.sections()) {
              std::cout << "  " << sec.section_id() << "(" << sec.category() << ", "
                        << sec.authority();
              if (!sec.consent_ids().empty())
                std::cout << " " << absl::StrJoin(sec.consent_ids(), ",");
              std::cout << ")";
            }
            std::cout << "\n";
          }
        });
  });

  struct FiguresFlags {
    v1::FiguresRequest req;
    std::string from, to;
  };
  auto fig = std::make_shared<FiguresFlags>();
  CLI::App* figures = audit->add_subcommand(
      "figures", "referral figures (an agency: its own; a hub admin: the network); <11 withheld");
  figures->add_option("--by", *fig->req.mutable_group_by(), "agency (receiving) or service");
  figures->add_option("--from", fig->from, "referrals submitted from (RFC 3339)");
  figures->add_option("--to", fig->to, "until (RFC 3339)");
  figures->callback([&g, fig] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, fig->from, fig->to, &from, &to)) return;
    fig->req.set_from_unix_nanos(from);
    fig->req.set_to_unix_nanos(to);
    Call<v1::FiguresRequest, v1::FiguresResponse>(
        g, &v1::AuditService::Stub::Figures, fig->req, [](const v1::FiguresResponse& r) {
          auto count = [](const v1::Count& c) {
            return c.suppressed() ? std::string("<11") : std::to_string(c.value());
          };
          auto timing = [](const v1::Timing& t) {
            return t.suppressed() ? std::string("<11")
                                  : absl::StrCat(t.p50_seconds(), "s/", t.p90_seconds(), "s");
          };
          std::cout << "group,offered,viewed,accepted,declined,completed,closed,escalated,"
                       "unassigned,first_view_p50/p90,accept_p50/p90,close_p50/p90\n";
          std::vector<v1::FiguresRow> rows(r.rows().begin(), r.rows().end());
          rows.push_back(r.total());
          for (const auto& row : rows) {
            std::cout << row.group() << "," << count(row.offered()) << "," << count(row.viewed())
                      << "," << count(row.accepted()) << "," << count(row.declined()) << ","
                      << count(row.completed()) << "," << count(row.closed()) << ","
                      << count(row.escalated()) << "," << count(row.unassigned()) << ","
                      << timing(row.to_first_view()) << "," << timing(row.to_accept()) << ","
                      << timing(row.to_close()) << "\n";
          }
        });
  });

  struct ReportFlags {
    v1::DisclosureReportRequest req;
    std::string from, to;
    bool hipaa = false, csv = false;
  };
  auto rf = std::make_shared<ReportFlags>();
  CLI::App* report = audit->add_subcommand("report", "a subject's disclosure report (compliance)");
  report->add_option("--subject", *rf->req.mutable_subject_id(), "the subject id")->required();
  report->add_option("--from", rf->from, "from (RFC 3339)");
  report->add_option("--to", rf->to, "to (RFC 3339)");
  report->add_flag("--hipaa-accounting", rf->hipaa, "the 45 CFR 164.528 accounting");
  report->add_flag("--csv", rf->csv, "CSV instead of text");
  report->callback([&g, rf] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, rf->from, rf->to, &from, &to)) return;
    rf->req.set_from_unix_nanos(from);
    rf->req.set_to_unix_nanos(to);
    rf->req.set_hipaa_accounting(rf->hipaa);
    const bool csv = rf->csv;
    Call<v1::DisclosureReportRequest, v1::DisclosureReportResponse>(
        g, &v1::AuditService::Stub::Report, rf->req, [csv](const v1::DisclosureReportResponse& r) {
          std::cout << (csv ? consent::ReportCsv(r) : consent::ReportText(r));
        });
  });

  struct ProofFlags {
    uint64_t seq = 0, size = 0, from_size = 0, to_size = 0;
    std::string out;
  };
  auto pf = std::make_shared<ProofFlags>();
  CLI::App* proof = audit->add_subcommand(
      "proof", "an inclusion proof (--seq, your own events) or a consistency proof (--from-size)");
  proof->add_option("--seq", pf->seq, "the event");
  proof->add_option("--size", pf->size, "against the head of this size (default: the latest)");
  proof->add_option("--from-size", pf->from_size, "consistency from this size");
  proof->add_option("--to-size", pf->to_size, "to this size (default: the latest)");
  proof->add_option("--out", pf->out, "write the proof here (JSON) for verify-proof");
  proof->callback([&g, pf] {
    auto write = [&](const google::protobuf::Message& m) {
      if (!pf->out.empty()) std::ofstream(pf->out, std::ios::trunc) << ToJson(m) << "\n";
      std::cout << ToJson(m) << "\n";
    };
    if (pf->seq != 0) {
      v1::AuditInclusionRequest req;
      req.set_seq(pf->seq);
      req.set_tree_size(pf->size);
      Call<v1::AuditInclusionRequest, v1::Receipt>(g, &v1::AuditService::Stub::Inclusion, req,
                                                   write);
    } else if (pf->from_size != 0) {
      v1::AuditConsistencyRequest req;
      req.set_size1(pf->from_size);
      req.set_size2(pf->to_size);
      Call<v1::AuditConsistencyRequest, v1::AuditConsistencyResponse>(
          g, &v1::AuditService::Stub::Consistency, req, write);
    } else {
      g.exit_code = FailUsage("audit proof needs --seq or --from-size");
    }
  });

  struct VerifyFlags {
    std::string file, vkey;
  };
  auto vf = std::make_shared<VerifyFlags>();
  CLI::App* vp = audit->add_subcommand("verify-proof",
                                       "check a proof file offline with the hub's verifier key");
  vp->add_option("--file", vf->file, "what audit proof --out wrote")->required();
  vp->add_option("--vkey", vf->vkey, "the hub's verifier key (hub-log.vkey)")->required();
  vp->callback([&g, vf] { g.exit_code = VerifyProofFile(vf->file, vf->vkey); });

  auto mf = std::make_shared<VerifyFlags>();
  CLI::App* monitor = audit->add_subcommand(
      "monitor", "check the log only grows since the last run (state kept in --state)");
  monitor->add_option("--state", mf->file, "the monitor's state file")->required();
  monitor->add_option("--vkey", mf->vkey, "the hub's verifier key (hub-log.vkey)")->required();
  monitor->callback([&g, mf] { g.exit_code = Monitor(g, mf->file, mf->vkey); });

  struct ExportFlags {
    v1::ExportRequest req;
    std::string from, to, out;
  };
  auto ef = std::make_shared<ExportFlags>();
  CLI::App* exp = audit->add_subcommand(
      "export", "a signed, self-checking bundle for a subject, referral or period (compliance)");
  exp->add_option("--subject", *ef->req.mutable_subject_id(), "a subject id");
  exp->add_option("--referral", *ef->req.mutable_referral(), "SENDER/ID");
  exp->add_option("--from", ef->from, "a period's start (RFC 3339)");
  exp->add_option("--to", ef->to, "a period's end (RFC 3339)");
  exp->add_flag(
      "--payloads", [ef](int64_t n) { ef->req.set_include_payloads(n > 0); },
      "include payloads (default: only their digests)");
  exp->add_option("--out", ef->out, "the bundle file (JSON Lines)")->required();
  exp->callback([&g, ef] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, ef->from, ef->to, &from, &to)) return;
    ef->req.set_from_unix_nanos(from);
    ef->req.set_to_unix_nanos(to);
    grpc::ClientContext ctx;
    if (!g.dev_agency.empty()) ctx.AddMetadata("x-careloop-dev-agency", g.dev_agency);
    auto reader = v1::AuditService::NewStub(Connect(g))->Export(&ctx, ef->req);
    v1::ExportResponse bundle;
    v1::BundleLine line;
    while (reader->Read(&line)) *bundle.add_lines() = line;
    grpc::Status st = reader->Finish();
    if (!st.ok()) {
      g.exit_code = Fail(FromGrpcStatus(st));
      return;
    }
    std::ofstream(ef->out, std::ios::trunc) << audit::BundleToJsonLines(bundle);
    std::cout << "wrote " << ef->out << ": " << bundle.lines_size() << " lines\n";
  });

  auto bf = std::make_shared<VerifyFlags>();
  CLI::App* vb = audit->add_subcommand("verify-bundle", "check a bundle completely, offline");
  vb->add_option("file", bf->file, "the bundle (JSON Lines)")->required();
  vb->add_option("--vkey", bf->vkey, "the hub's verifier key (hub-log.vkey)")->required();
  vb->callback([&g, bf] {
    absl::StatusOr<std::string> text = ReadFile(bf->file);
    absl::StatusOr<std::unique_ptr<trust::Ed25519NoteVerifier>> key = Verifier(bf->vkey);
    if (!text.ok() || !key.ok()) {
      g.exit_code = FailUsage(std::string((!text.ok() ? text.status() : key.status()).message()));
      return;
    }
    absl::StatusOr<v1::ExportResponse> bundle = audit::ParseBundle(*text);
    if (!bundle.ok()) {
      std::cout << "NOT VERIFIED: " << bundle.status().message() << "\n";
      g.exit_code = kVerifyFailed;
      return;
    }
    audit::BundleReport r = audit::VerifyBundle(*bundle, **key);
    if (!r.ok) {
      std::cout << "NOT VERIFIED: line " << r.bad_line << ": " << r.problem << "\n";
      g.exit_code = kVerifyFailed;
      return;
    }
    std::cout << "verified: " << r.events << " events (" << r.query << "), " << r.envelopes
              << " envelope signatures, all in the log of size " << r.tree_size
              << " signed by the hub\n";
  });

  struct FhirFlags {
    v1::FhirAuditEventsRequest req;
    std::string from, to;
    bool bundle = false;
  };
  auto ff = std::make_shared<FhirFlags>();
  CLI::App* fhir =
      audit->add_subcommand("fhir", "FHIR R4 AuditEvents, one per disclosure (compliance)");
  fhir->add_option("--subject", *ff->req.mutable_subject_id(), "the subject id")->required();
  fhir->add_option("--from", ff->from, "from (RFC 3339)");
  fhir->add_option("--to", ff->to, "to (RFC 3339)");
  fhir->add_flag("--bundle", ff->bundle,
                 "one FHIR Bundle (collection): the person's Consents and the AuditEvents");
  fhir->callback([&g, ff] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, ff->from, ff->to, &from, &to)) return;
    ff->req.set_from_unix_nanos(from);
    ff->req.set_to_unix_nanos(to);
    if (ff->bundle) return PrintFhirExport(g, ff->req);
    Call<v1::FhirAuditEventsRequest, v1::FhirAuditEventsResponse>(
        g, &v1::AuditService::Stub::FhirAuditEvents, ff->req,
        [](const v1::FhirAuditEventsResponse& r) {
          for (const auto& e : r.audit_events_json()) std::cout << e << "\n";
        });
  });
}

}  // namespace careloop::cli
