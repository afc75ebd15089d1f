// careloop ledger append|read|head|prove|receipt|verify-receipt|verify|backup|restore|tail
#include <google/protobuf/struct.pb.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "services/edge/edge_backup.h"
#include "services/ledger/remote_ledger.h"
#include "services/trust/head_signer.h"
#include "storage/local_ledger.h"
#include "storage/receipt.h"
#include "storage/verify.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<ledger::RemoteLedger> Remote(const Globals& g) {
  return std::make_unique<ledger::RemoteLedger>(ConnectLedger(g), absl::Seconds(g.timeout_seconds));
}

std::string Hex(const std::string& bytes) { return HexEncode(bytes); }

void PrintEvent(const Globals& g, const v1::Event& e) {
  if (g.json) {
    std::cout << ToJson(e) << "\n";
    return;
  }
  const v1::EventHeader& h = e.header();
  std::cout << "seq " << h.seq() << "  " << h.stream() << "@" << h.stream_version() << "  "
            << h.type() << "  time "
            << absl::FormatTime(absl::FromUnixNanos(h.commit_time_unix_nanos()),
                                absl::UTCTimeZone());
  if (h.agencies_size() > 0) {
    std::cout << "  agencies";
    for (const auto& a : h.agencies()) std::cout << " " << a;
  }
  if (!h.subject().empty()) std::cout << "  subject " << h.subject();
  std::cout << "  payload " << h.payload_size() << " bytes";
  if (e.payload_redacted()) std::cout << " (redacted)";
  std::cout << "\n";
}

// The ledger directory inside a data dir, or the directory itself.
std::string LedgerDirOf(const std::string& dir) {
  fs::path p = fs::path(dir) / "ledger";
  return fs::exists(p / "CARELOOP_FORMAT") ? p.string() : dir;
}

}  // namespace

void AddLedgerCommands(CLI::App& app, Globals& g) {
  CLI::App* ledger =
      app.add_subcommand("ledger", "the hub's event log: append, read, prove, verify, back up");
  ledger->require_subcommand(1);
  ledger
      ->add_option("--ledger", g.ledger,
                   "the ledger's own listener (internal: the hub's operators only): "
                   "unix:PATH, or HOST:PORT with the hub's service certificate")
      ->capture_default_str();

  // append
  struct AppendOpts {
    std::string stream, type, payload, payload_file, subject, key;
    std::vector<std::string> agencies;
    std::optional<uint64_t> expect_version;
    bool must_not_exist = false;
    bool unsigned_dev_fact = false;
  };
  auto ao = std::make_shared<AppendOpts>();
  CLI::App* append = ledger->add_subcommand("append", "append one event (waits for fsync)");
  append->add_option("--stream", ao->stream, "stream, e.g. referral/r-1")->required();
  append->add_option("--type", ao->type, "event type, e.g. NoteAdded")->required();
  append->add_option("--payload", ao->payload, "payload text");
  append->add_option("--payload-file", ao->payload_file, "payload from a file");
  append->add_option("--agency", ao->agencies, "agency the event concerns (repeatable)");
  append->add_option("--subject", ao->subject, "subject id the event concerns");
  append->add_option("--expect-version", ao->expect_version,
                     "precondition: the stream is at this version");
  append->add_flag("--must-not-exist", ao->must_not_exist,
                   "precondition: the stream has no events");
  append->add_option("--idempotency-key", ao->key,
                     "retries with this key return the original commit");
  append->add_flag("--unsigned-dev-fact", ao->unsigned_dev_fact,
                   "required: this writes an unsigned event straight into the hub's log, for "
                   "development and tests only (agencies' changes are signed envelopes)");
  append->callback([&g, ao] {
    if (!ao->unsigned_dev_fact) {
      g.exit_code = FailUsage(
          "ledger append writes an unsigned fact into the hub's log: development and tests "
          "only; say so with --unsigned-dev-fact");
      return;
    }
    v1::AppendRequest req;
    v1::EventInput* e = req.add_events();
    e->set_stream(ao->stream);
    e->set_type(ao->type);
    if (!ao->payload_file.empty()) {
      absl::StatusOr<std::string> p = ReadFile(ao->payload_file);
      if (!p.ok()) {
        g.exit_code = FailUsage(std::string(p.status().message()));
        return;
      }
      e->set_payload(*p);
    } else {
      e->set_payload(ao->payload);
    }
    for (const auto& a : ao->agencies) e->add_agencies(a);
    e->set_subject(ao->subject);
    if (ao->expect_version || ao->must_not_exist) {
      v1::Precondition* pc = req.add_preconditions();
      pc->set_stream(ao->stream);
      if (ao->must_not_exist) {
        pc->set_must_not_exist(true);
      } else {
        pc->set_expected_version(*ao->expect_version);
      }
    }
    req.set_idempotency_key(ao->key);
    absl::StatusOr<v1::Commit> c = Remote(g)->Append(std::move(req));
    if (!c.ok()) {
      g.exit_code = Fail(c.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(*c) << "\n";
    } else {
      std::cout << (c->deduplicated() ? "already appended (idempotent retry): " : "appended: ")
                << "seq " << c->first_seq() << ", " << ao->stream << " version "
                << c->stream_versions(0) << "\nsigned head: size " << c->head().tree_size()
                << ", root " << Hex(c->head().root_hash()) << "\n";
    }
  });

  // read
  struct ReadOpts {
    uint64_t from = 1;
    uint32_t limit = 100;
    bool payloads = false;
    std::string stream, agency, subject;
  };
  auto ro = std::make_shared<ReadOpts>();
  CLI::App* read =
      ledger->add_subcommand("read", "read events in seq order, or one stream/agency/subject");
  read->add_option("--from", ro->from, "first seq (or stream version with --stream)")
      ->capture_default_str();
  read->add_option("--limit", ro->limit, "most events to print")->capture_default_str();
  read->add_flag("--payloads", ro->payloads, "include payloads (JSON output shows them)");
  read->add_option("--stream", ro->stream, "only this stream");
  read->add_option("--agency", ro->agency, "only events concerning this agency (after --from - 1)");
  read->add_option("--subject", ro->subject,
                   "only events concerning this subject (after --from - 1)");
  read->callback([&g, ro] {
    auto remote = Remote(g);
    absl::StatusOr<v1::ReadResponse> resp;
    if (!ro->stream.empty()) {
      v1::ReadStreamRequest req;
      req.set_stream(ro->stream);
      req.set_from_version(ro->from);
      req.set_limit(ro->limit);
      req.set_include_payloads(ro->payloads);
      resp = remote->ReadStream(req);
    } else if (!ro->agency.empty() || !ro->subject.empty()) {
      v1::ReadIndexRequest req;
      if (!ro->agency.empty())
        req.set_agency(ro->agency);
      else
        req.set_subject(ro->subject);
      req.set_after_seq(ro->from > 0 ? ro->from - 1 : 0);
      req.set_limit(ro->limit);
      req.set_include_payloads(ro->payloads);
      resp = remote->ReadIndex(req);
    } else {
      v1::ReadRequest req;
      req.set_from_seq(ro->from);
      req.set_limit(ro->limit);
      req.set_include_payloads(ro->payloads);
      resp = remote->Read(req);
    }
    if (!resp.ok()) {
      g.exit_code = Fail(resp.status());
      return;
    }
    for (const v1::Event& e : resp->events()) PrintEvent(g, e);
    if (!g.json)
      std::cout << resp->events_size() << " event(s); ledger size " << resp->tree_size() << "\n";
  });

  // head
  auto head_size = std::make_shared<uint64_t>(0);
  CLI::App* head = ledger->add_subcommand("head", "the latest signed tree head (C2SP checkpoint)");
  head->add_option("--size", *head_size, "the head stored for this tree size instead");
  head->callback([&g, head_size] {
    Output(g, Remote(g)->Head(*head_size), [](const v1::SignedHead& h) {
      std::cout << "log id " << h.log_id() << "\ntree size " << h.tree_size() << "\nroot "
                << Hex(h.root_hash()) << "\n\n"
                << h.checkpoint();
    });
  });

  // prove
  struct ProveOpts {
    uint64_t seq = 0, size = 0, from_size = 0, to_size = 0;
  };
  auto po = std::make_shared<ProveOpts>();
  CLI::App* prove =
      ledger->add_subcommand("prove", "inclusion proof (--seq) or consistency proof (--from-size)");
  prove->add_option("--seq", po->seq, "event to prove");
  prove->add_option("--size", po->size, "tree size to prove it in (default: current)");
  prove->add_option("--from-size", po->from_size, "consistency proof from this size");
  prove->add_option("--to-size", po->to_size, "... to this size (default: current)");
  prove->callback([&g, po] {
    auto remote = Remote(g);
    if (po->seq > 0) {
      Output(g, remote->ProveInclusion(po->seq, po->size), [&](const v1::InclusionProof& p) {
        std::cout << "inclusion of seq " << po->seq << " (leaf " << p.leaf_index()
                  << ") in tree size " << p.tree_size() << ":\n";
        for (const auto& h : p.hashes()) std::cout << "  " << Hex(h) << "\n";
      });
    } else if (po->from_size > 0) {
      Output(g, remote->ProveConsistency(po->from_size, po->to_size),
             [](const v1::ConsistencyProof& p) {
               std::cout << "consistency of size " << p.size1() << " with size " << p.size2()
                         << ":\n";
               for (const auto& h : p.hashes()) std::cout << "  " << Hex(h) << "\n";
             });
    } else {
      g.exit_code =
          FailUsage("name --seq for an inclusion proof or --from-size for a consistency proof");
    }
  });

  // receipt
  struct ReceiptOpts {
    uint64_t seq = 0;
    std::string out;
  };
  auto rco = std::make_shared<ReceiptOpts>();
  CLI::App* receipt =
      ledger->add_subcommand("receipt", "fetch an event's receipt (JSON) for offline checks");
  receipt->add_option("--seq", rco->seq, "the event")->required();
  receipt->add_option("--out", rco->out, "write it to this file instead of stdout");
  receipt->callback([&g, rco] {
    absl::StatusOr<v1::Receipt> r = Remote(g)->GetReceipt(rco->seq);
    if (!r.ok()) {
      g.exit_code = Fail(r.status());
      return;
    }
    std::string json = ToJson(*r) + "\n";
    if (rco->out.empty()) {
      std::cout << json;
    } else {
      std::ofstream(rco->out) << json;
      std::cout << "wrote " << rco->out << "\n";
    }
  });

  // verify-receipt
  struct VrOpts {
    std::string receipt, vkey, payload_file;
  };
  auto vro = std::make_shared<VrOpts>();
  CLI::App* vr = ledger->add_subcommand("verify-receipt",
                                        "check a receipt offline with only the hub's verifier key");
  vr->add_option("--receipt", vro->receipt, "receipt JSON file")->required();
  vr->add_option("--vkey", vro->vkey, "the hub's verifier key file (hub-log.vkey)")->required();
  vr->add_option("--payload-file", vro->payload_file,
                 "also check that this payload is the event's");
  vr->callback([&g, vro] {
    absl::StatusOr<std::string> text = ReadFile(vro->receipt);
    if (!text.ok()) {
      g.exit_code = FailUsage(std::string(text.status().message()));
      return;
    }
    v1::Receipt r;
    if (absl::Status s = FromJson(*text, &r); !s.ok()) {
      g.exit_code = FailUsage(absl::StrCat("receipt ", vro->receipt, ": ", s.message()));
      return;
    }
    auto key = trust::Ed25519NoteVerifier::FromFile(vro->vkey);
    if (!key.ok()) {
      g.exit_code = FailUsage(std::string(key.status().message()));
      return;
    }
    std::optional<std::string> payload;
    if (!vro->payload_file.empty()) {
      absl::StatusOr<std::string> p = ReadFile(vro->payload_file);
      if (!p.ok()) {
        g.exit_code = FailUsage(std::string(p.status().message()));
        return;
      }
      payload = *p;
    }
    absl::StatusOr<v1::EventHeader> h = storage::VerifyReceipt(r, **key, payload);
    if (!h.ok()) {
      std::cerr << "careloop: receipt does NOT verify: " << h.status().message() << "\n";
      g.exit_code = kVerifyFailed;
      return;
    }
    if (g.json) {
      std::cout << "{\"ok\":true,\"seq\":" << h->seq() << ",\"tree_size\":" << r.head().tree_size()
                << "}\n";
    } else {
      std::cout << "receipt verifies: seq " << h->seq() << " (" << h->stream() << "@"
                << h->stream_version() << ") is in the log " << r.head().log_id()
                << " at tree size " << r.head().tree_size()
                << (payload ? "; the payload matches" : "") << "\n";
    }
  });

  // verify
  struct VerifyOpts {
    std::string data_dir, vkey;
  };
  auto vo = std::make_shared<VerifyOpts>();
  CLI::App* verify =
      ledger->add_subcommand("verify", "re-hash and re-check a ledger data dir offline");
  verify->add_option("--data-dir", vo->data_dir, "the hub's data dir (or its ledger/ directory)")
      ->required();
  verify->add_option("--vkey", vo->vkey,
                     "pin the hub's verifier key (else the data dir's own is used)");
  verify->callback([&g, vo] {
    std::unique_ptr<trust::Ed25519NoteVerifier> pinned;
    if (!vo->vkey.empty()) {
      auto k = trust::Ed25519NoteVerifier::FromFile(vo->vkey);
      if (!k.ok()) {
        g.exit_code = FailUsage(std::string(k.status().message()));
        return;
      }
      pinned = *std::move(k);
    }
    storage::VerifierFactory factory =
        [](absl::string_view vkey) -> absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> {
      auto v = trust::Ed25519NoteVerifier::FromVerifierKey(vkey);
      if (!v.ok()) return v.status();
      return std::unique_ptr<storage::NoteVerifier>(std::move(*v));
    };
    absl::Time start = absl::Now();
    absl::StatusOr<storage::VerifyReport> r =
        storage::VerifyLedgerDir(LedgerDirOf(vo->data_dir), pinned.get(), factory);
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    if (!r.ok()) {
      std::cerr << "careloop: cannot verify: " << r.status().message() << "\n";
      g.exit_code = kVerifyFailed;
      return;
    }
    if (g.json) {
      // A Struct, so that the problem's text is escaped as JSON.
      google::protobuf::Struct out;
      auto& f = *out.mutable_fields();
      f["ok"].set_bool_value(r->ok);
      f["events"].set_number_value(static_cast<double>(r->events));
      f["heads"].set_number_value(static_cast<double>(r->heads));
      f["first_bad_seq"].set_number_value(static_cast<double>(r->first_bad_seq));
      f["problem"].set_string_value(r->problem);
      f["root"].set_string_value(r->root_hex);
      f["log_id"].set_string_value(r->log_id);
      if (r->high_water_size.has_value())
        f["high_water_size"].set_number_value(static_cast<double>(*r->high_water_size));
      f["seconds"].set_number_value(secs);
      std::cout << ToJson(out) << "\n";
    } else if (r->ok) {
      std::cout << "ledger verifies: " << r->events << " events, " << r->heads
                << " signed heads, root " << r->root_hex << " (log " << r->log_id << "), "
                << r->payload_bytes << " payload bytes, " << secs << " s\n";
      if (r->high_water_size.has_value()) {
        std::cout << "high-water mark: " << *r->high_water_size << " events acknowledged\n";
      } else {
        std::cout << "note: no high-water mark (a backup has none; restore gives it one)\n";
      }
      if (r->used_stored_key) {
        std::cout << "note: checked against the data dir's own verifier key; pin the hub's key "
                     "with --vkey\n";
      }
    } else {
      std::cout << "ledger does NOT verify: first bad seq " << r->first_bad_seq << ": "
                << r->problem << "\n";
    }
    if (!r->ok) g.exit_code = kVerifyFailed;
  });

  // backup
  auto backup_dir = std::make_shared<std::string>();
  CLI::App* backup = ledger->add_subcommand(
      "backup", "consistent backup while serving (a directory on the hub's machine)");
  backup->add_option("--dir", *backup_dir, "backup directory; must not exist")->required();
  backup->callback([&g, backup_dir] {
    Output(g, Remote(g)->Backup(*backup_dir), [](const v1::BackupResponse& r) {
      std::cout << "backup of " << r.tree_size() << " events written to " << r.directory() << "\n";
    });
  });

  // restore
  struct RestoreOpts {
    std::string from, data_dir;
  };
  auto rso = std::make_shared<RestoreOpts>();
  CLI::App* restore = ledger->add_subcommand(
      "restore", "restore a backup into a stopped hub's empty data dir; starts a new log id");
  restore->add_option("--from", rso->from, "backup directory")->required();
  restore
      ->add_option("--data-dir", rso->data_dir,
                   "the hub's data dir (its ledger/ must be absent or empty)")
      ->required();
  restore->callback([&g, rso] {
    // The console's part (staff accounts, agency keys) goes to edge/, which
    // must be empty: checked before the ledger is touched.
    const fs::path edge_part = fs::path(rso->from) / edge::kEdgeBackupDir;
    const fs::path edge_dir = fs::path(rso->data_dir) / "edge";
    std::error_code ec;
    const bool with_edge = fs::is_directory(edge_part, ec);
    if (with_edge && fs::exists(edge_dir, ec) && !fs::is_empty(edge_dir, ec)) {
      g.exit_code = Fail(absl::FailedPreconditionError(
          absl::StrCat("the backup holds the console's accounts and keys, and ", edge_dir.string(),
                       " is not empty; move it away first (it may be evidence)")));
      return;
    }
    absl::StatusOr<storage::RestoreResult> r =
        storage::RestoreLedger(rso->from, (fs::path(rso->data_dir) / "ledger").string());
    if (!r.ok()) {
      g.exit_code = Fail(r.status());
      return;
    }
    if (with_edge) {
      const absl::Status edge = edge::RestoreEdge(edge_part.string(), edge_dir.string());
      if (!edge.ok()) {
        g.exit_code = Fail(edge);
        return;
      }
    }
    if (g.json) {
      std::cout << "{\"tree_size\":" << r->tree_size << ",\"new_log_id\":\"" << r->new_log_id
                << "\",\"previous_log_id\":\"" << r->previous_log_id
                << "\",\"edge_restored\":" << (with_edge ? "true" : "false") << "}\n";
    } else {
      std::cout << "restored " << r->tree_size << " events into " << rso->data_dir << "/ledger\n"
                << "new log id " << r->new_log_id << " (was " << r->previous_log_id << ")\n"
                << (with_edge ? "the console's staff accounts and agency keys: restored into "
                              : "no console data in the backup; ")
                << (with_edge ? rso->data_dir + "/edge\n" : std::string("edge/ left as it is\n"))
                << "Events committed after the backup was taken are not in the restored ledger;\n"
                << "monitors will report the log id change when careloopd starts.\n";
    }
  });

  // tail
  struct TailOpts {
    uint64_t from = 1;
    uint64_t count = 0;
    bool payloads = false;
  };
  auto to = std::make_shared<TailOpts>();
  CLI::App* tail = ledger->add_subcommand("tail", "stream events as they commit");
  tail->add_option("--from", to->from, "first seq")->capture_default_str();
  tail->add_option("--count", to->count, "stop after this many events (0: never)");
  tail->add_flag("--payloads", to->payloads, "include payloads");
  tail->callback([&g, to] {
    auto remote = std::make_unique<ledger::RemoteLedger>(ConnectLedger(g), absl::Hours(24 * 365));
    std::unique_ptr<storage::TailStream> stream = remote->Tail(to->from, to->payloads);
    uint64_t seen = 0;
    while (to->count == 0 || seen < to->count) {
      absl::StatusOr<std::vector<v1::Event>> batch = stream->Next(absl::Seconds(1));
      if (!batch.ok()) {
        g.exit_code = Fail(batch.status());
        return;
      }
      for (const auto& e : *batch) {
        PrintEvent(g, e);
        std::cout.flush();
        if (++seen == to->count) break;
      }
    }
  });
}

}  // namespace careloop::cli
