#include "storage/verify.h"

#include <rocksdb/db.h>

#include <optional>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "careloop/v1/ledger.pb.h"
#include "storage/high_water.h"
#include "storage/local_ledger.h"
#include "storage/merkle.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"
#include "storage/verify_indexes.h"

namespace careloop::storage {
namespace {

using schema::AsView;
using schema::BE64;
using schema::DecodeBE64;

struct PayloadCounts {
  uint64_t events = 0;
  uint64_t bytes = 0;
  ExpectedIndexes indexes;  // the entries the events name
};

// Every event has its payload (nothing in careloop removes one), hashing to
// its header's payload hash and size.
Finding CheckPayloads(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                      const rocksdb::ReadOptions& ro, const std::atomic<bool>* cancel,
                      PayloadCounts* counts) {
  std::unique_ptr<rocksdb::Iterator> ev(db->NewIterator(ro, cfs[schema::kEvents]));
  std::unique_ptr<rocksdb::Iterator> pl(db->NewIterator(ro, cfs[schema::kPayloads]));
  pl->SeekToFirst();
  uint64_t expect = 1;
  v1::EventHeader header;
  for (ev->SeekToFirst(); ev->Valid() && !IsCancelled(cancel); ev->Next(), ++expect) {
    uint64_t seq = DecodeBE64(AsView(ev->key()));
    if (ev->key().size() != 8 || seq != expect) {
      return {expect,
              absl::StrCat("event seq ", expect, " is missing (next stored key is seq ", seq, ")")};
    }
    if (!header.ParseFromArray(ev->value().data(), static_cast<int>(ev->value().size())) ||
        header.seq() != seq) {
      return {seq, absl::StrCat("event seq ", seq, ": the header is damaged")};
    }
    while (pl->Valid() && DecodeBE64(AsView(pl->key())) < seq) pl->Next();
    if (!pl->Valid() || DecodeBE64(AsView(pl->key())) != seq) {
      absl::Status s = FromRocks(pl->status(), "reading payloads");
      if (!s.ok())
        return {seq, absl::StrCat("storage corruption near seq ", seq, ": ", s.message())};
      return {seq, absl::StrCat("event seq ", seq, ": its payload is missing")};
    }
    rocksdb::Slice payload = pl->value();
    if (payload.size() != header.payload_size() ||
        AsStringView(Sha256(AsView(payload))) != header.payload_sha256()) {
      return {seq, absl::StrCat("event seq ", seq, ": the payload does not match its hash")};
    }
    counts->bytes += payload.size();
    AddExpectedEntries(header, &counts->indexes);
    ++counts->events;
  }
  absl::Status s = FromRocks(ev->status(), "reading events");
  if (s.ok()) s = FromRocks(pl->status(), "reading payloads");
  if (!s.ok())
    return {expect, absl::StrCat("storage corruption near seq ", expect, ": ", s.message())};
  while (pl->Valid() && DecodeBE64(AsView(pl->key())) < expect) pl->Next();
  if (pl->Valid()) {
    uint64_t seq = DecodeBE64(AsView(pl->key()));
    return {seq, absl::StrCat("a payload is stored for seq ", seq, ", which has no event")};
  }
  return {};
}

// Perfect subtrees of a tree of n leaves, leaves included: 2n - popcount(n).
uint64_t TreeNodeCount(uint64_t n) {
  return 2 * n - static_cast<uint64_t>(__builtin_popcountll(n));
}

struct Verifier {
  Verifier(rocksdb::DB* database, const std::vector<rocksdb::ColumnFamilyHandle*>& handles,
           const rocksdb::ReadOptions& read_options, const NoteVerifier* head_key,
           const std::atomic<bool>* cancel_flag)
      : db(database), cfs(handles), ro(read_options), key(head_key), cancel(cancel_flag) {}

  rocksdb::DB* db;
  const std::vector<rocksdb::ColumnFamilyHandle*>& cfs;
  const rocksdb::ReadOptions& ro;
  const NoteVerifier* key;  // null: signatures are not checked
  const std::atomic<bool>* cancel;
  std::set<std::string> log_ids;
  VerifyReport report;
  std::optional<HighWater> mark;  // the durable high-water mark, if the dir has one
  std::optional<Hash> root_at_mark;

  bool Fail(uint64_t seq, std::string problem) {
    if (report.ok) {
      report.ok = false;
      report.first_bad_seq = seq;
      report.problem = std::move(problem);
    }
    return false;
  }

  bool CheckHead(rocksdb::Iterator* it, uint64_t size, const Hash& root) {
    v1::SignedHead head;
    if (DecodeBE64(AsView(it->key())) != size) return true;
    if (!head.ParseFromString(it->value().ToString())) {
      return Fail(size, absl::StrCat("tree head at size ", size, " does not parse"));
    }
    if (head.tree_size() != size || head.root_hash() != AsStringView(root)) {
      return Fail(size, absl::StrCat("tree head at size ", size,
                                     " does not match the tree recomputed from the events"));
    }
    std::string log_id = head.log_id();
    if (key != nullptr) {
      absl::StatusOr<Checkpoint> cp = OpenCheckpoint(head.checkpoint(), *key);
      if (!cp.ok()) {
        return Fail(size, absl::StrCat("tree head at size ", size, ": ", cp.status().message()));
      }
      if (cp->tree_size != size || cp->root != root ||
          cp->time_unix_nanos != head.time_unix_nanos()) {
        return Fail(size, absl::StrCat("the signed checkpoint at size ", size,
                                       " differs from the head stored beside it"));
      }
      log_id = LogIdOfOrigin(cp->origin);
    }
    if (log_id != head.log_id() || !log_ids.contains(log_id)) {
      return Fail(size, absl::StrCat("tree head at size ", size, " names log id '", log_id,
                                     "', which this ledger never had"));
    }
    ++report.heads;
    return true;
  }

  // Recomputes the tree from the headers; compares every stored node and head.
  Finding CheckTree() {
    std::unique_ptr<rocksdb::Iterator> ev(db->NewIterator(ro, cfs[schema::kEvents]));
    std::unique_ptr<rocksdb::Iterator> hd(db->NewIterator(ro, cfs[schema::kHeads]));
    std::vector<std::unique_ptr<rocksdb::Iterator>> levels;  // one sequential cursor per level
    merkle::CompactRange tree;
    std::vector<std::pair<merkle::NodeId, Hash>> created;
    hd->SeekToFirst();
    // A head at size 0 (an empty ledger, or one signed before the first event).
    if (hd->Valid() && DecodeBE64(AsView(hd->key())) == 0) {
      if (!CheckHead(hd.get(), 0, merkle::EmptyRoot())) return {0, report.problem};
      hd->Next();
    }
    if (Finding f = HeadsReadable(hd.get(), 0); f.found()) return f;
    if (mark.has_value() && mark->size == 0) root_at_mark = merkle::EmptyRoot();
    uint64_t expect = 1;
    for (ev->SeekToFirst(); ev->Valid() && !IsCancelled(cancel); ev->Next(), ++expect) {
      uint64_t seq = DecodeBE64(AsView(ev->key()));
      if (ev->key().size() != 8 || seq != expect) {
        return {expect, absl::StrCat("event seq ", expect, " is missing (next stored key is seq ",
                                     seq, ")")};
      }
      v1::EventHeader header;
      if (!header.ParseFromArray(ev->value().data(), static_cast<int>(ev->value().size())) ||
          header.seq() != seq) {
        return {seq, absl::StrCat("event seq ", seq, ": the header is damaged")};
      }
      created.clear();
      tree.Append(merkle::HashLeaf(AsView(ev->value())), &created);
      for (const auto& [id, hash] : created) {
        if (levels.size() <= id.level) levels.resize(id.level + 1);
        auto& it = levels[id.level];
        if (!it) {
          it.reset(db->NewIterator(ro, cfs[schema::kMerkle]));
          it->Seek(schema::MerkleKey(id));
        }
        if (!it->Valid() || AsView(it->key()) != schema::MerkleKey(id) ||
            AsView(it->value()) != AsStringView(hash)) {
          absl::Status s = FromRocks(it->status(), "reading tree nodes");
          if (!s.ok())
            return {seq, absl::StrCat("storage corruption near seq ", seq, ": ", s.message())};
          return {seq, absl::StrCat("event seq ", seq, ": stored tree node level ",
                                    static_cast<int>(id.level), " index ", id.index,
                                    " does not match the recomputed tree")};
        }
        it->Next();
      }
      if (hd->Valid() && DecodeBE64(AsView(hd->key())) == seq) {
        if (!CheckHead(hd.get(), seq, tree.Root())) return {seq, report.problem};
        hd->Next();
        if (Finding f = HeadsReadable(hd.get(), seq); f.found()) return f;
      }
      if (mark.has_value() && mark->size == seq) root_at_mark = tree.Root();
      ++report.events;
    }
    absl::Status s = FromRocks(ev->status(), "reading events");
    if (s.ok()) s = FromRocks(hd->status(), "reading tree heads");
    if (!s.ok())
      return {expect, absl::StrCat("storage corruption near seq ", expect, ": ", s.message())};
    report.root_hex = HexEncode(AsStringView(tree.Root()));
    if (hd->Valid()) {
      uint64_t size = DecodeBE64(AsView(hd->key()));
      return {size, absl::StrCat("a tree head at size ", size, " lies beyond the last event (",
                                 report.events, ")")};
    }
    if (report.events > 0) {
      // The last round's head must cover the last event.
      std::string last;
      if (!db->Get(ro, cfs[schema::kHeads], BE64(report.events), &last).ok()) {
        return {report.events, absl::StrCat("no signed tree head covers the last event (seq ",
                                            report.events, ")")};
      }
    }
    return ExtraTreeNodes();
  }

  // The heads iterator stopped on damage after the head at `size`: the
  // first head it could not read is of a later size.
  static Finding HeadsReadable(rocksdb::Iterator* hd, uint64_t size) {
    if (hd->Valid()) return {};
    absl::Status s = FromRocks(hd->status(), "reading tree heads");
    if (s.ok()) return {};
    return {size + 1, absl::StrCat("storage corruption in the tree heads after size ", size, ": ",
                                   s.message())};
  }

  // Every stored node was compared while the tree was rebuilt; one more
  // (beyond the tree, or of no position) is damage too.
  Finding ExtraTreeNodes() {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cfs[schema::kMerkle]));
    uint64_t stored = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++stored;
    absl::Status s = FromRocks(it->status(), "reading tree nodes");
    if (!s.ok()) return {report.events + 1, absl::StrCat("storage corruption: ", s.message())};
    if (stored != TreeNodeCount(report.events)) {
      return {report.events + 1,
              absl::StrCat("the tree holds ", stored, " stored nodes where ", report.events,
                           " events make ", TreeNodeCount(report.events))};
    }
    return {};
  }

  // The log must hold what its high-water mark says was acknowledged.
  Finding CheckMark() const {
    if (!mark.has_value()) return {};
    if (mark->log_id != report.log_id) {
      return {kNoPosition, absl::StrCat("the high-water mark is of log id ", mark->log_id,
                                        " but the ledger is ", report.log_id)};
    }
    if (mark->size > report.events) {
      return {report.events + 1,
              absl::StrCat("the log is short: it holds ", report.events,
                           " events but acknowledged ", mark->size, " (its high-water mark)")};
    }
    if (root_at_mark != mark->root) {
      return {mark->size, absl::StrCat("the tree at size ", mark->size,
                                       " is not the one acknowledged there (its high-water mark)")};
    }
    return {};
  }
};

// The ledger's metadata: its log id, the ones it had before a restore, and
// the verifier key it recorded.
absl::StatusOr<v1::LedgerMeta> ReadMeta(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                        const rocksdb::ReadOptions& ro) {
  std::string bytes;
  v1::LedgerMeta meta;
  if (!db->Get(ro, cf, schema::kMetaKey, &bytes).ok() || !meta.ParseFromString(bytes)) {
    return absl::DataLossError("the ledger metadata is missing or damaged");
  }
  return meta;
}

rocksdb::ReadOptions ScanOptions(const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.verify_checksums = true;
  ro.fill_cache = false;  // a scrub must not evict what the hub serves from
  ro.readahead_size = 2 << 20;
  return ro;
}

}  // namespace

absl::StatusOr<VerifyReport> VerifyOpenLedger(const VerifyScope& scope) {
  const rocksdb::ReadOptions ro = ScanOptions(scope.snapshot);
  const auto& cfs = *scope.cfs;
  ASSIGN_OR_RETURN(v1::LedgerMeta meta, ReadMeta(scope.db, cfs[schema::kDefault], ro));
  Verifier v(scope.db, cfs, ro, scope.key, scope.cancel);
  v.report.log_id = meta.log_id();
  v.report.signatures_checked = scope.key != nullptr;
  v.log_ids.insert(meta.log_id());
  for (const std::string& id : meta.previous_log_ids()) v.log_ids.insert(id);

  Finding mark_finding;
  if (scope.mark.ok()) {
    v.mark = *scope.mark;
  } else {
    mark_finding = {kNoPosition, std::string(scope.mark.status().message())};
  }
  if (v.mark.has_value()) v.report.high_water_size = v.mark->size;

  // Two independent passes: the payloads (with what the events name in the
  // indexes), and the tree with its stored nodes and signed heads followed by
  // what the indexes hold (in parallel, one per core, when asked). Then the
  // indexes are checked against the events. The report names the earliest
  // problem any finds.
  Finding payload_finding;
  Finding index_finding;
  PayloadCounts counts;
  auto payload_pass = [&] {
    payload_finding = CheckPayloads(scope.db, cfs, ro, scope.cancel, &counts);
  };
  std::thread payload_thread;
  if (scope.parallel) {
    payload_thread = std::thread(payload_pass);
  } else {
    payload_pass();
  }
  Finding tree_finding = v.CheckTree();
  const IndexTally stored = TallyIndexes(scope.db, cfs, ro, scope.cancel);
  if (payload_thread.joinable()) payload_thread.join();
  if (!payload_finding.found()) {
    index_finding =
        CheckIndexes(scope.db, cfs, ro, counts.events, counts.indexes, stored, scope.cancel);
  }
  if (IsCancelled(scope.cancel)) return absl::CancelledError("verification abandoned");
  v.report.payload_bytes = counts.bytes;
  Finding first;
  for (const Finding& f :
       {payload_finding, tree_finding, index_finding, v.CheckMark(), mark_finding}) {
    if (f.Before(first)) first = f;
  }
  if (!first.found() && counts.events != v.report.events) {
    first = {std::min(counts.events, v.report.events) + 1,
             "the payload and tree passes saw different event counts"};
  }
  v.report.ok = !first.found();
  if (first.found()) {
    v.report.first_bad_seq = first.seq == kNoPosition ? 0 : first.seq;
    v.report.problem = first.problem;
  }
  return v.report;
}

absl::StatusOr<VerifyReport> VerifyLedgerDir(const std::string& dir, const NoteVerifier* pinned,
                                             const VerifierFactory& make_verifier) {
  RETURN_IF_ERROR(CheckFormat(dir));
  rocksdb::Options opts;
  opts.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  opts.paranoid_checks = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& name : schema::CfNames())
    descs.emplace_back(name, rocksdb::ColumnFamilyOptions(opts));
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(opts, dir, descs, &cfs, &raw),
                            absl::StrCat("opening ", dir, " read-only")));
  std::unique_ptr<rocksdb::DB> db(raw);
  absl::Cleanup close_handles = [&] {
    for (auto* h : cfs) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  };

  std::unique_ptr<NoteVerifier> stored_key;
  const NoteVerifier* key = pinned;
  if (key == nullptr) {
    ASSIGN_OR_RETURN(v1::LedgerMeta meta,
                     ReadMeta(db.get(), cfs[schema::kDefault], rocksdb::ReadOptions()));
    absl::StatusOr<std::unique_ptr<NoteVerifier>> k = make_verifier(meta.verifier_key());
    if (!k.ok()) {
      return absl::DataLossError(
          absl::StrCat("the data dir's verifier key is unusable: ", k.status().message()));
    }
    stored_key = *std::move(k);
    key = stored_key.get();
  }
  VerifyScope scope;
  scope.db = db.get();
  scope.cfs = &cfs;
  scope.key = key;
  scope.mark = HighWaterFile::Read(rocksdb::FileSystem::Default().get(), dir);
  ASSIGN_OR_RETURN(VerifyReport report, VerifyOpenLedger(scope));
  report.used_stored_key = pinned == nullptr;
  return report;
}

}  // namespace careloop::storage
