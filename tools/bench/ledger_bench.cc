// Ledger benchmarks. Prints Markdown tables for docs/PERFORMANCE.md.
//
//   ledger_bench append  [--seconds 5] [--clients 1,16,64] [--dir D]
//   ledger_bench proofs  [--events 1000000] [--dir D]
//   ledger_bench floor   [--submissions 40000] [--per-round 1,2,4,16,64] [--dir D]
//
// append: throughput and latency of 1 KiB appends with fsync, in-process and
// over gRPC, beside two ceilings measured in the same run on the same disk:
// (a) plain RocksDB sync Puts from the same number of threads, and (b) one
// thread writing sync WriteBatches of 64 events.
// proofs: inclusion-proof latency in a ledger of --events events, then the
// offline verifier's rate beside raw SHA-256 over the same bytes.
// floor: what DESIGN.md's ledger layout costs at the least per referral
// submission (see FloorBench).
#include <grpcpp/grpcpp.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/runtime.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/ledger/ledger_grpc_service.h"
#include "services/ledger/remote_ledger.h"
#include "services/names/names.h"
#include "services/trust/head_signer.h"
#include "storage/local_ledger.h"
#include "storage/schema.h"
#include "storage/verify.h"
#include "tools/bench/bench_main.h"

namespace careloop::bench {
namespace {

namespace fs = std::filesystem;
namespace schema = storage::schema;
constexpr size_t kEventBytes = 1024;

struct Row {
  std::string what;
  int clients = 0;
  uint64_t events = 0;
  double seconds = 0;
  std::vector<double> latencies_us;
  double events_per_fsync = 0;
  double rate() const { return events / seconds; }
  double pct(double p) {
    if (latencies_us.empty()) return 0;
    std::sort(latencies_us.begin(), latencies_us.end());
    return latencies_us[std::min(latencies_us.size() - 1,
                                 static_cast<size_t>(p * latencies_us.size()))];
  }
};

// The median run by throughput of several; repetitions are interleaved with
// the other rows so that a slow moment of the machine does not favour one.
Row Median(std::vector<Row> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const Row& a, const Row& b) { return a.rate() < b.rate(); });
  return runs[runs.size() / 2];
}

void Print(Row& r) {
  std::printf("| %-28s | %3d | %10.0f | %8.0f | %8.0f | %6s |\n", r.what.c_str(), r.clients,
              r.rate(), r.pct(0.50), r.pct(0.99),
              r.events_per_fsync > 0
                  ? absl::StrCat(static_cast<int>(r.events_per_fsync * 10) / 10.0).c_str()
                  : "-");
  std::fflush(stdout);
}

std::unique_ptr<trust::Ed25519HeadSigner> Signer() {
  auto key = trust::Ed25519PrivateKey::Generate();
  return std::make_unique<trust::Ed25519HeadSigner>("careloop.bench", *std::move(key));
}

// Runs `op(thread, i)` from `clients` threads for `seconds`; each op is one
// timed unit carrying `events_per_op` events.
template <typename Op>
Row Drive(const std::string& what, int clients, double seconds, int events_per_op, Op op) {
  Row row;
  row.what = what;
  row.clients = clients;
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(clients);
  std::vector<uint64_t> count(clients, 0);
  std::vector<std::thread> threads;
  absl::Time start = absl::Now();
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        absl::Time t0 = absl::Now();
        if (!op(t, i)) return;
        lat[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        count[t] += events_per_op;
      }
    });
  }
  std::this_thread::sleep_for(
      std::chrono::milliseconds(static_cast<int>(seconds * 1000)));  // the measured window
  stop.store(true);
  for (auto& th : threads) th.join();
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (int t = 0; t < clients; ++t) {
    row.events += count[t];
    row.latencies_us.insert(row.latencies_us.end(), lat[t].begin(), lat[t].end());
  }
  return row;
}

v1::AppendRequest OneEvent(int client, const std::string& payload) {
  v1::AppendRequest r;
  v1::EventInput* e = r.add_events();
  e->set_stream(absl::StrCat("bench/c", client));
  e->set_type("Bench");
  e->set_payload(payload);
  return r;
}

size_t g_unsynced = 2;
int g_clients_per_channel = 8;
int g_repeat = 3;

std::unique_ptr<storage::LocalLedger> OpenLedger(const std::string& dir,
                                                 const storage::HeadSigner* signer) {
  storage::LedgerOptions o;
  o.max_unsynced_rounds = g_unsynced;
  o.dir = dir;
  o.signer = signer;
  o.hub_name = "careloop.bench";
  auto l = storage::LocalLedger::Open(o);
  if (!l.ok()) {
    std::fprintf(stderr, "open: %s\n", l.status().ToString().c_str());
    Die();
  }
  return *std::move(l);
}

// A RocksDB with default options: the baselines the ledger is measured against.
std::unique_ptr<rocksdb::DB> OpenPlainRocks(const std::string& dir) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(opts, dir, &raw).ok()) Die();
  return std::unique_ptr<rocksdb::DB>(raw);
}

Row RocksPut(const std::string& dir, int n, double seconds, const std::string& payload) {
  std::unique_ptr<rocksdb::DB> db = OpenPlainRocks(dir);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return Drive("(a) RocksDB sync Put", n, seconds, 1, [&](int t, uint64_t i) {
    return db->Put(wo, absl::StrCat("k", t, "-", i), payload).ok();
  });
}

Row LedgerLocal(const std::string& dir, int n, double seconds, const std::string& payload,
                const storage::HeadSigner* signer) {
  auto ledger = OpenLedger(dir, signer);
  Row r = Drive("ledger in-process", n, seconds, 1,
                [&](int t, uint64_t) { return ledger->Append(OneEvent(t, payload)).ok(); });
  r.events_per_fsync =
      static_cast<double>(ledger->events_written()) / std::max<uint64_t>(1, ledger->syncs());
  return r;
}

Row LedgerGrpc(const std::string& dir, int n, double seconds, const std::string& payload,
               const storage::HeadSigner* signer) {
  auto ledger = OpenLedger(dir, signer);
  // The ledger's own listener, as careloopd serves it: a unix socket.
  ledger::LedgerGrpcService service(ledger.get(),
                                    ledger::LedgerGrpcService::Transport::kUnixSocket);
  const std::string address = absl::StrCat("unix:", dir, "/ledger.sock");
  grpc::ServerBuilder b;
  b.AddListeningPort(address, grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  // A few channels, as a service process would hold.
  std::vector<std::unique_ptr<ledger::RemoteLedger>> remotes;
  for (int c = 0; c < (n + g_clients_per_channel - 1) / g_clients_per_channel; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("channel-index", c);  // distinct channels, not one shared subchannel
    remotes.push_back(std::make_unique<ledger::RemoteLedger>(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  Row r = Drive("ledger over gRPC", n, seconds, 1, [&](int t, uint64_t) {
    return remotes[t / g_clients_per_channel]->Append(OneEvent(t, payload)).ok();
  });
  r.events_per_fsync =
      static_cast<double>(ledger->events_written()) / std::max<uint64_t>(1, ledger->syncs());
  server->Shutdown();
  return r;
}

Row RocksBatch64(const std::string& dir, double seconds, const std::string& payload) {
  std::unique_ptr<rocksdb::DB> db = OpenPlainRocks(dir);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  Row r = Drive("(b) RocksDB sync batch of 64", 1, seconds, 64, [&](int, uint64_t i) {
    rocksdb::WriteBatch wb;
    for (int k = 0; k < 64; ++k) wb.Put(absl::StrCat("k", i, "-", k), payload);
    return db->Write(wo, &wb).ok();
  });
  r.events_per_fsync = 64;
  return r;
}

void AppendBench(const std::string& base, double seconds, const std::vector<int>& clients,
                 bool baselines, bool grpc_rows) {
  const std::string payload(kEventBytes, 'p');
  auto signer = Signer();
  std::printf("median of %d interleaved runs of %.0f s each\n\n", g_repeat, seconds);
  std::printf(
      "| what | clients | events/s | p50 µs | p99 µs | events/fsync "
      "|\n|---|---|---|---|---|---|\n");
  int run = 0;
  auto dir = [&](const char* what, int n) {
    return absl::StrCat(base, "/", what, "-", n, "-", run++);
  };
  for (int n : clients) {
    std::vector<Row> put, local, grpc;
    for (int rep = 0; rep < g_repeat; ++rep) {
      if (baselines) put.push_back(RocksPut(dir("rocks-put", n), n, seconds, payload));
      local.push_back(LedgerLocal(dir("ledger-local", n), n, seconds, payload, signer.get()));
      if (grpc_rows)
        grpc.push_back(LedgerGrpc(dir("ledger-grpc", n), n, seconds, payload, signer.get()));
    }
    for (auto* rows : {&put, &local, &grpc}) {
      if (rows->empty()) continue;
      Row m = Median(*rows);
      Print(m);
    }
  }
  if (baselines) {
    std::vector<Row> batch;
    for (int rep = 0; rep < g_repeat; ++rep)
      batch.push_back(RocksBatch64(dir("rocks-batch64", 1), seconds, payload));
    Row m = Median(batch);
    Print(m);
  }
}

double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The least the ledger's layout (schema.h, as DESIGN.md prescribes it) costs
// per referral submission: the six events a submission needs at the least
// (the signed envelope, its sections, the routing, two disclosures, the
// duplicate guard), each written as a header, a payload apart, a stream key,
// agency and subject index keys, its leaf and the perfect-subtree nodes it
// completes; per round one signed head and one WriteBatch with sync = true.
// One thread, no queue, no other threads to wake, no preconditions, no
// reads: a floor for any implementation of the layout, not a model of ours.
// The process CPU includes RocksDB's flushes (every memtable is flushed
// before the clock stops) and the compactions that ran meanwhile.
void FloorBench(const std::string& base, uint64_t submissions, const std::vector<int>& per_round) {
  auto signer = Signer();
  struct Kind {
    std::string stream;
    const char* type;
    size_t payload_bytes;
    int agencies;
    bool subject;
  };
  // Payload sizes of referral_bench's submissions (1 KiB of sections).
  static const Kind kKinds[] = {
      {names::stream::Referral("org.stmarys", "r"), names::event::kReferralSubmitted, 1350, 1,
       true},
      {names::stream::Referral("org.stmarys", "r"), names::event::kReferralSections, 1100, 1, true},
      {names::stream::Referral("org.stmarys", "r"), names::event::kReferralRouted, 300, 2, true},
      {names::stream::Disclosure("s"), names::event::kDisclosureRecorded, 180, 2, true},
      {names::stream::Disclosure("s"), names::event::kDisclosureRecorded, 180, 2, true},
      {names::stream::Dedupe("org.stmarys", "s", "food"), names::event::kDedupeOpened, 60, 1,
       false},
  };
  std::printf(
      "| submissions per round | events | CPU µs per submission | wall µs per submission | "
      "fsyncs |\n|---|---|---|---|---|\n");
  for (int k : per_round) {
    std::string dir = absl::StrCat(base, "/floor-", k);
    fs::remove_all(dir);
    rocksdb::Options opts = storage::LedgerDbOptions(64 << 20);
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* raw = nullptr;
    CARELOOP_CHECK(rocksdb::DB::Open(opts, dir, storage::LedgerCfDescriptors(opts), &h, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    auto cf = [&](int i) { return h[static_cast<size_t>(i)]; };
    storage::merkle::CompactRange tree;
    std::vector<std::pair<storage::merkle::NodeId, Hash>> created;
    std::vector<std::string> payloads;
    for (const Kind& kind : kKinds) payloads.emplace_back(kind.payload_bytes, 'p');
    rocksdb::WriteOptions sync;
    sync.sync = true;
    uint64_t seq = 0, rounds = 0;
    const double cpu0 = ProcessCpuSeconds();
    const absl::Time t0 = absl::Now();
    for (uint64_t done = 0; done < submissions; done += static_cast<uint64_t>(k)) {
      rocksdb::WriteBatch wb;
      for (int r = 0; r < k; ++r) {
        const std::string n = absl::StrCat(done + static_cast<uint64_t>(r));
        for (size_t e = 0; e < std::size(kKinds); ++e) {
          const Kind& kind = kKinds[e];
          ++seq;
          v1::EventHeader hdr;
          hdr.set_seq(seq);
          hdr.set_stream(absl::StrCat(kind.stream, n));
          hdr.set_stream_version(e < 3 ? e + 1 : e == 4 ? 2 : 1);
          hdr.set_type(kind.type);
          hdr.set_commit_time_unix_nanos(absl::ToUnixNanos(t0));
          hdr.add_agencies("org.stmarys");
          if (kind.agencies > 1) hdr.add_agencies("org.foodbank");
          if (kind.subject) hdr.set_subject(absl::StrCat("s", n));
          const Hash ph = Sha256(payloads[e]);
          hdr.set_payload_sha256(std::string(AsStringView(ph)));
          hdr.set_payload_size(payloads[e].size());
          const std::string header = hdr.SerializeAsString();
          const std::string key = schema::BE64(seq);
          wb.Put(cf(schema::kEvents), key, header);
          wb.Put(cf(schema::kPayloads), key, payloads[e]);
          wb.Put(cf(schema::kStreams), schema::PrefixedKey(hdr.stream(), hdr.stream_version()),
                 key);
          for (const std::string& a : hdr.agencies())
            wb.Put(cf(schema::kAgencyIndex), schema::PrefixedKey(a, seq), "");
          if (kind.subject)
            wb.Put(cf(schema::kSubjectIndex), schema::PrefixedKey(hdr.subject(), seq), "");
          created.clear();
          tree.Append(storage::merkle::HashLeaf(header), &created);
          for (const auto& [id, hash] : created)
            wb.Put(cf(schema::kMerkle), schema::MerkleKey(id), std::string(AsStringView(hash)));
        }
      }
      storage::Checkpoint cp{"careloop.bench", seq, tree.Root(), absl::ToUnixNanos(absl::Now())};
      absl::StatusOr<std::string> note = storage::SignCheckpoint(cp, *signer);
      CARELOOP_CHECK(note.ok());
      v1::SignedHead head;
      head.set_tree_size(seq);
      head.set_root_hash(std::string(AsStringView(cp.root)));
      head.set_checkpoint(*std::move(note));
      wb.Put(cf(schema::kHeads), schema::BE64(seq), head.SerializeAsString());
      CARELOOP_CHECK(db->Write(sync, &wb).ok());
      ++rounds;
    }
    const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
    CARELOOP_CHECK(db->Flush(rocksdb::FlushOptions(), h).ok());
    const double cpu = ProcessCpuSeconds() - cpu0;
    const double n = static_cast<double>(rounds) * k;
    std::printf("| %d | %zu | %.1f | %.1f | %.3f |\n", k, std::size(kKinds), cpu * 1e6 / n,
                wall * 1e6 / n, static_cast<double>(rounds) / n);
    for (auto* handle : h) CARELOOP_CHECK(db->DestroyColumnFamilyHandle(handle).ok());
    db.reset();
    fs::remove_all(dir);
  }
}

// Reads as the services make them: the whole log in pages (headers only, and
// with payloads), and pages of one agency's index from random points.
void ReadBench(storage::LocalLedger* ledger) {
  const uint64_t size = ledger->size();
  for (bool payloads : {false, true}) {
    absl::Time s = absl::Now();
    uint64_t read = 0, pages = 0;
    for (uint64_t from = 1; from <= size; ++pages) {
      v1::ReadRequest r;
      r.set_from_seq(from);
      r.set_include_payloads(payloads);
      auto page = ledger->Read(r);
      if (!page.ok() || page->events().empty()) Die();
      read += page->events_size();
      from = page->events().rbegin()->header().seq() + 1;
    }
    const double secs = absl::ToDoubleSeconds(absl::Now() - s);
    std::printf("| Read, whole log, %s | %llu events in %llu pages | %.2f s | %.0f events/s |\n",
                payloads ? "with payloads" : "headers", static_cast<unsigned long long>(read),
                static_cast<unsigned long long>(pages), secs, read / secs);
  }
  std::mt19937_64 rng(7);
  std::vector<double> lat;
  for (int i = 0; i < 2000; ++i) {
    v1::ReadIndexRequest r;
    r.set_agency(absl::StrCat("org.a", rng() % 50));
    r.set_after_seq(rng() % size);
    r.set_limit(100);
    r.set_include_payloads(true);
    absl::Time s = absl::Now();
    auto page = ledger->ReadIndex(r);
    lat.push_back(absl::ToDoubleMicroseconds(absl::Now() - s));
    if (!page.ok()) Die();
  }
  std::sort(lat.begin(), lat.end());
  std::printf(
      "| ReadIndex, 100 events with payloads, random agency and point | p50 %.0f µs | p99 "
      "%.0f µs |\n\n",
      lat[lat.size() / 2], lat[lat.size() * 99 / 100]);
}

void ProofBench(const std::string& base, uint64_t events) {
  auto signer = Signer();
  std::string dir = base + "/ledger-1m";
  const std::string payload(kEventBytes, 'q');
  // Load in a child that exits without closing anything, as after kill -9:
  // the parent's first open is a crash recovery.
  pid_t child = fork();
  if (child == 0) {
    auto ledger = OpenLedger(dir, signer.get());
    absl::Time t0 = absl::Now();
    const int batch = 1000;
    // The last quarter as the services append: two events per append, each
    // with an idempotency key (the scrub checks every record), many in flight.
    const uint64_t keyed = events / 4;
    for (uint64_t n = 0; n < events - keyed; n += batch) {
      v1::AppendRequest r;
      for (int k = 0; k < batch; ++k) {
        v1::EventInput* e = r.add_events();
        e->set_stream(absl::StrCat("bench/s", (n + k) % 1000));
        e->set_type("Bench");
        e->add_agencies(absl::StrCat("org.a", (n + k) % 50));
        e->set_payload(payload);
      }
      if (!ledger->Append(std::move(r)).ok()) _exit(1);
    }
    absl::Mutex mu;
    int in_flight = 0;
    bool failed = false;
    for (uint64_t n = events - keyed; n < events; n += 2) {
      v1::AppendRequest r;
      for (uint64_t k = n; k < n + 2; ++k) {
        v1::EventInput* e = r.add_events();
        e->set_stream(absl::StrCat("bench/k", k / 2));
        e->set_type("Bench");
        e->add_agencies(absl::StrCat("org.a", k % 50));
        e->set_payload(payload);
      }
      r.set_idempotency_key(absl::StrCat("bench-", n));
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](int* f) { return *f < 2000; }, &in_flight));
        ++in_flight;
      }
      ledger->AppendAsync(std::move(r), [&](const absl::StatusOr<v1::Commit>& c) {
        absl::MutexLock lock(&mu);
        failed = failed || !c.ok();
        --in_flight;
      });
    }
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](int* f) { return *f == 0; }, &in_flight));
      if (failed) _exit(1);
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - t0);
    std::printf(
        "loaded %llu events of 1 KiB (%llu in batches of 1000, %llu in keyed appends of 2): %.1f "
        "s (%.0f events/s)\n\n",
        static_cast<unsigned long long>(events), static_cast<unsigned long long>(events - keyed),
        static_cast<unsigned long long>(keyed), secs, events / secs);
    std::fflush(stdout);
    _exit(0);  // no close, no flush: the WAL tail is replayed at the next open
  }
  int wstatus = 0;
  waitpid(child, &wstatus, 0);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) Die();
  {
    absl::Time t0 = absl::Now();
    auto ledger = OpenLedger(dir, signer.get());
    std::printf("reopen after an unclean exit at %llu events: %.3f s\n\n",
                static_cast<unsigned long long>(ledger->size()),
                absl::ToDoubleSeconds(absl::Now() - t0));
    std::mt19937_64 rng(42);
    std::vector<double> lat;
    const uint64_t size = ledger->size();
    for (int i = 0; i < 20000; ++i) {
      uint64_t seq = 1 + rng() % size;
      absl::Time s = absl::Now();
      auto p = ledger->ProveInclusion(seq, 0);
      lat.push_back(absl::ToDoubleMicroseconds(absl::Now() - s));
      if (!p.ok()) Die();
    }
    std::sort(lat.begin(), lat.end());
    std::printf("| inclusion proof at %llu events | p50 %.1f µs | p99 %.1f µs | max %.1f µs |\n\n",
                static_cast<unsigned long long>(size), lat[lat.size() / 2],
                lat[lat.size() * 99 / 100], lat.back());
    lat.clear();
    for (int i = 0; i < 5000; ++i) {
      uint64_t b = 1 + rng() % size;
      uint64_t a = 1 + rng() % b;
      absl::Time s = absl::Now();
      auto p = ledger->ProveConsistency(a, b);
      lat.push_back(absl::ToDoubleMicroseconds(absl::Now() - s));
      if (!p.ok()) Die();
    }
    std::sort(lat.begin(), lat.end());
    std::printf("| consistency proof at %llu events | p50 %.1f µs | p99 %.1f µs |\n\n",
                static_cast<unsigned long long>(size), lat[lat.size() / 2],
                lat[lat.size() * 99 / 100]);
    if (!ledger->Close().ok()) Die();
  }
  {
    // Reopen time at this size: no replay of the log.
    absl::Time s = absl::Now();
    auto ledger = OpenLedger(dir, signer.get());
    std::printf("reopen after a clean close at %llu events: %.3f s\n\n",
                static_cast<unsigned long long>(ledger->size()),
                absl::ToDoubleSeconds(absl::Now() - s));
    ReadBench(ledger.get());
  }
  // Raw SHA-256 over the bytes the verifier must hash for each event: the
  // payload and the leaf (0x00 || header), from memory.
  v1::EventHeader h;
  h.set_seq(123456);
  h.set_stream("bench/s123");
  h.set_stream_version(1234);
  h.set_type("Bench");
  h.set_commit_time_unix_nanos(1'800'000'000'000'000'000);
  h.add_agencies("org.a12");
  h.set_payload_sha256(std::string(32, 'h'));
  h.set_payload_size(kEventBytes);
  std::string header = h.SerializeAsString();
  const uint64_t sha_events = 1'000'000;
  absl::Time s = absl::Now();
  Hash acc{};
  for (uint64_t i = 0; i < sha_events; ++i) {
    Hash a = Sha256(payload);
    Hash b = Sha256Parts({absl::string_view("\0", 1), header});
    acc[i % 32] ^= a[0] ^ b[0];
  }
  double sha_secs = absl::ToDoubleSeconds(absl::Now() - s);
  double sha_rate = sha_events / sha_secs;
  auto verifier = trust::Ed25519NoteVerifier::FromVerifierKey(signer->VerifierKey());
  s = absl::Now();
  auto report = storage::VerifyLedgerDir(dir, verifier->get(), nullptr);
  double vsecs = absl::ToDoubleSeconds(absl::Now() - s);
  if (!report.ok() || !report->ok) {
    std::fprintf(stderr, "verify failed\n");
    Die();
  }
  double vrate = report->events / vsecs;
  std::printf("| offline verify | %llu events | %.1f s | %.0f events/s |\n",
              static_cast<unsigned long long>(report->events), vsecs, vrate);
  std::printf(
      "| raw SHA-256 (payload + leaf per event, from memory) | %.0f events/s (%.0f MB/s) | ratio "
      "%.2f | (%d) |\n",
      sha_rate, sha_rate * (kEventBytes + header.size() + 1) / 1e6, vrate / sha_rate, acc[0] & 1);
  // The background scrub: the same checks on a snapshot of the open
  // ledger, on one thread.
  auto ledger = OpenLedger(dir, signer.get());
  s = absl::Now();
  absl::StatusOr<storage::VerifyReport> scrub = ledger->Scrub();
  double ssecs = absl::ToDoubleSeconds(absl::Now() - s);
  if (!scrub.ok() || !scrub->ok) {
    std::fprintf(stderr, "scrub failed\n");
    Die();
  }
  std::printf(
      "| background scrub (one thread, open ledger) | %llu events | %.1f s | %.0f events/s |\n",
      static_cast<unsigned long long>(scrub->events), ssecs, scrub->events / ssecs);
}

}  // namespace
}  // namespace careloop::bench

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"careloop ledger benchmarks"};
  app.require_subcommand(1);
  double seconds = 5;
  std::string clients = "1,16,64";
  std::string dir;
  uint64_t events = 1'000'000;
  bool no_baselines = false, no_grpc = false;
  auto* append = app.add_subcommand("append", "append throughput and latency vs RocksDB ceilings");
  append->add_option("--seconds", seconds, "measured seconds per row");
  append->add_option("--clients", clients, "comma list of client counts");
  append->add_option("--dir", dir,
                     "scratch directory on the disk to measure (default: a temp dir)");
  append->add_flag("--no-baselines", no_baselines, "skip the RocksDB ceilings");
  append->add_flag("--no-grpc", no_grpc, "skip the gRPC rows");
  append->add_option("--unsynced-rounds", careloop::bench::g_unsynced,
                     "LedgerOptions::max_unsynced_rounds");
  append->add_option("--repeat", careloop::bench::g_repeat,
                     "interleaved runs per row (the median is shown)");
  append->add_option("--clients-per-channel", careloop::bench::g_clients_per_channel,
                     "gRPC clients sharing one channel");
  uint64_t submissions = 40'000;
  std::string per_round = "1,2,4,16,64";
  auto* floor = app.add_subcommand(
      "floor", "the least the ledger's layout costs per referral submission, by round size");
  floor->add_option("--submissions", submissions, "submissions per row");
  floor->add_option("--per-round", per_round, "comma list of submissions per commit round");
  floor->add_option("--dir", dir, "scratch directory on the disk to measure");
  auto* proofs =
      app.add_subcommand("proofs", "proof latency at size, reopen time, offline verify vs SHA-256");
  proofs->add_option("--events", events, "ledger size");
  proofs->add_option("--dir", dir, "scratch directory");
  CLI11_PARSE(app, argc, argv);
  careloop::log::Init(careloop::log::Level::kWarn, careloop::log::Format::kLogfmt);
  namespace fs = std::filesystem;
  std::string base =
      dir.empty() ? (fs::temp_directory_path() / absl::StrCat("careloop-bench-", getpid())).string()
                  : dir;
  fs::create_directories(base);
  if (*append) {
    std::vector<int> counts;
    for (absl::string_view c : absl::StrSplit(clients, ','))
      counts.push_back(std::stoi(std::string(c)));
    careloop::bench::AppendBench(base, seconds, counts, !no_baselines, !no_grpc);
  } else if (*floor) {
    std::vector<int> counts;
    for (absl::string_view c : absl::StrSplit(per_round, ','))
      counts.push_back(std::stoi(std::string(c)));
    careloop::bench::FloorBench(base, submissions, counts);
  } else {
    careloop::bench::ProofBench(base, events);
  }
  if (dir.empty()) fs::remove_all(base);
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
