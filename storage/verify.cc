#include "storage/verify.h"

#include <rocksdb/db.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "careloop/v1/ledger.pb.h"
#include "services/common/status.h"
#include "storage/local_ledger.h"
#include "storage/merkle.h"
#include "storage/schema.h"

namespace careloop::storage {
namespace {

using schema::AsView;
using schema::BE64;
using schema::DecodeBE64;

struct Verifier {
  rocksdb::DB* db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  const NoteVerifier* key;
  std::set<std::string> log_ids;
  VerifyReport report;

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
    absl::StatusOr<Checkpoint> cp = OpenCheckpoint(head.checkpoint(), *key);
    if (!cp.ok()) {
      return Fail(size, absl::StrCat("tree head at size ", size, ": ", cp.status().message()));
    }
    if (cp->tree_size != size || cp->root != root ||
        cp->time_unix_nanos != head.time_unix_nanos()) {
      return Fail(size, absl::StrCat("the signed checkpoint at size ", size,
                                     " differs from the head stored beside it"));
    }
    std::string log_id = LogIdOfOrigin(cp->origin);
    if (log_id != head.log_id() || !log_ids.contains(log_id)) {
      return Fail(size, absl::StrCat("tree head at size ", size, " names log id '", log_id,
                                     "', which this ledger never had"));
    }
    ++report.heads;
    return true;
  }
};

}  // namespace

absl::StatusOr<VerifyReport> VerifyLedgerDir(const std::string& dir, const NoteVerifier* pinned,
                                             const VerifierFactory& make_verifier) {
  RETURN_IF_ERROR(CheckFormat(dir));
  rocksdb::Options opts;
  opts.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  opts.paranoid_checks = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& name : schema::CfNames())
    descs.emplace_back(name, rocksdb::ColumnFamilyOptions(opts));
  Verifier v;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(opts, dir, descs, &v.cfs, &raw),
                            absl::StrCat("opening ", dir, " read-only")));
  std::unique_ptr<rocksdb::DB> db(raw);
  v.db = raw;
  auto cleanup = [&]() {
    for (auto* h : v.cfs) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    v.cfs.clear();
  };

  std::string meta_bytes;
  v1::LedgerMeta meta;
  rocksdb::Status ms =
      db->Get(rocksdb::ReadOptions(), v.cfs[schema::kDefault], schema::kMetaKey, &meta_bytes);
  if (!ms.ok() || !meta.ParseFromString(meta_bytes)) {
    cleanup();
    return absl::DataLossError("the ledger metadata is missing or damaged");
  }
  v.report.log_id = meta.log_id();
  v.log_ids.insert(meta.log_id());
  for (const std::string& id : meta.previous_log_ids()) v.log_ids.insert(id);

  std::unique_ptr<NoteVerifier> stored_key;
  v.key = pinned;
  if (v.key == nullptr) {
    absl::StatusOr<std::unique_ptr<NoteVerifier>> k = make_verifier(meta.verifier_key());
    if (!k.ok()) {
      cleanup();
      return absl::DataLossError(
          absl::StrCat("the data dir's verifier key is unusable: ", k.status().message()));
    }
    stored_key = *std::move(k);
    v.key = stored_key.get();
    v.report.used_stored_key = true;
  }

  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;
  ro.readahead_size = 2 << 20;
  std::unique_ptr<rocksdb::Iterator> ev(db->NewIterator(ro, v.cfs[schema::kEvents]));
  std::unique_ptr<rocksdb::Iterator> pl(db->NewIterator(ro, v.cfs[schema::kPayloads]));
  std::unique_ptr<rocksdb::Iterator> hd(db->NewIterator(ro, v.cfs[schema::kHeads]));
  std::vector<std::unique_ptr<rocksdb::Iterator>> levels;  // one sequential cursor per tree level
  merkle::CompactRange tree;
  std::vector<std::pair<merkle::NodeId, Hash>> created;

  hd->SeekToFirst();
  pl->SeekToFirst();
  // A head at size 0 (an empty ledger, or one signed before the first event).
  if (hd->Valid() && DecodeBE64(AsView(hd->key())) == 0) {
    if (v.CheckHead(hd.get(), 0, merkle::EmptyRoot())) hd->Next();
  }
  uint64_t expect = 1;
  for (ev->SeekToFirst(); ev->Valid() && v.report.ok; ev->Next(), ++expect) {
    uint64_t seq = DecodeBE64(AsView(ev->key()));
    if (ev->key().size() != 8 || seq != expect) {
      v.Fail(expect,
             absl::StrCat("event seq ", expect, " is missing (next stored key is seq ", seq, ")"));
      break;
    }
    v1::EventHeader header;
    std::string header_bytes = ev->value().ToString();
    if (!header.ParseFromString(header_bytes) || header.seq() != seq) {
      v.Fail(seq, absl::StrCat("event seq ", seq, ": the header is damaged"));
      break;
    }
    while (pl->Valid() && DecodeBE64(AsView(pl->key())) < seq) pl->Next();
    if (pl->Valid() && DecodeBE64(AsView(pl->key())) == seq) {
      rocksdb::Slice payload = pl->value();
      if (payload.size() != header.payload_size() ||
          AsStringView(Sha256(AsView(payload))) != header.payload_sha256()) {
        v.Fail(seq, absl::StrCat("event seq ", seq, ": the payload does not match its hash"));
        break;
      }
      v.report.payload_bytes += payload.size();
    } else {
      ++v.report.redacted_payloads;
    }
    created.clear();
    tree.Append(merkle::HashLeaf(header_bytes), &created);
    for (const auto& [id, hash] : created) {
      if (levels.size() <= id.level) {
        levels.resize(id.level + 1);
      }
      auto& it = levels[id.level];
      if (!it) {
        it.reset(db->NewIterator(ro, v.cfs[schema::kMerkle]));
        it->Seek(schema::MerkleKey(id));
      }
      if (!it->Valid() || AsView(it->key()) != schema::MerkleKey(id) ||
          AsView(it->value()) != AsStringView(hash)) {
        RETURN_IF_ERROR(FromRocks(it->status(), "reading tree nodes"));
        v.Fail(seq, absl::StrCat("event seq ", seq, ": stored tree node level ",
                                 static_cast<int>(id.level), " index ", id.index,
                                 " does not match the recomputed tree"));
        break;
      }
      it->Next();
    }
    if (!v.report.ok) break;
    if (hd->Valid() && DecodeBE64(AsView(hd->key())) == seq) {
      if (!v.CheckHead(hd.get(), seq, tree.Root())) break;
      hd->Next();
    }
    ++v.report.events;
  }
  absl::Status iter_status = FromRocks(ev->status(), "reading events");
  if (iter_status.ok()) iter_status = FromRocks(pl->status(), "reading payloads");
  if (iter_status.ok()) iter_status = FromRocks(hd->status(), "reading tree heads");
  if (!iter_status.ok() && v.report.ok) {
    v.Fail(v.report.events + 1, absl::StrCat("storage corruption near seq ", v.report.events + 1,
                                             ": ", iter_status.message()));
  }
  if (v.report.ok) {
    if (hd->Valid()) {
      v.Fail(DecodeBE64(AsView(hd->key())),
             absl::StrCat("a tree head at size ", DecodeBE64(AsView(hd->key())),
                          " lies beyond the last event (", v.report.events, ")"));
    } else if (v.report.events > 0) {
      // The last round's head must cover the last event.
      std::string last;
      rocksdb::Status s =
          db->Get(rocksdb::ReadOptions(), v.cfs[schema::kHeads], BE64(v.report.events), &last);
      if (!s.ok()) {
        v.Fail(v.report.events, absl::StrCat("no signed tree head covers the last event (seq ",
                                             v.report.events, ")"));
      }
    }
  }
  v.report.root_hex = HexEncode(AsStringView(tree.Root()));
  levels.clear();
  ev.reset();
  pl.reset();
  hd.reset();
  cleanup();
  return v.report;
}

}  // namespace careloop::storage
