// LocalLedger's commit round: the writer decides every request of a round
// against the round so far (idempotency, preconditions, cursors, versions),
// builds one write batch with the new events, indexes, tree nodes and signed
// head, checks the round's invariants and hands it to the syncer. Nothing of
// a round is written unless all of it is.
#include <rocksdb/write_batch.h>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "storage/local_ledger.h"
#include "storage/rocksdb_status.h"
#include "storage/round_check.h"
#include "storage/schema.h"

namespace careloop::storage {

using schema::BE64;
using schema::DecodeBE64;

namespace {

absl::Status KeyReused(uint64_t first_seq) {
  return absl::AlreadyExistsError(absl::StrCat(
      "idempotency key was already used for a different append (seq ", first_seq, ")"));
}

}  // namespace

// What the writer decided for one request of the round.
struct LocalLedger::RoundResult {
  absl::Status status;
  v1::Commit commit;
  int dedup_of = -1;          // replays request dedup_of of this round
  bool dedup_stored = false;  // replays a stored commit
  uint64_t dedup_head_size = 0;
  bool record_key = false;  // store an idempotency record for it
};

// One round being built on the writer thread. Reads see the round's own
// effects (stream versions, cursors, keys) before the ledger's.
class LocalLedger::Round {
 public:
  Round(LocalLedger& ledger, std::vector<Pending>& requests)
      : ledger_(ledger),
        requests_(requests),
        now_(ledger.options_.clock->Now()),
        now_ns_(absl::ToUnixNanos(now_)),
        tree_(ledger.tree_),
        results_(requests.size()) {}

  absl::Time now() const { return now_; }
  rocksdb::WriteBatch& batch() { return wb_; }
  const merkle::CompactRange& tree() const { return tree_; }

  // Decides every request in order and records the idempotency keys.
  void Decide() {
    for (size_t i = 0; i < requests_.size(); ++i) Decide(i);
    RecordKeys();
  }

  // The round's invariants against the tree it started from.
  absl::Status Check(const merkle::CompactRange& before) const {
    RoundFacts facts{&before, &tree_, &nodes_, {}, streams_};
    for (const RoundResult& r : results_) {
      if (r.status.ok() && r.dedup_of < 0 && !r.dedup_stored) facts.commits.push_back(&r.commit);
    }
    return CheckRound(facts);
  }

  // What the ledger keeps of a written round (tips, nodes, the head); moves
  // the tips and nodes out.
  WrittenRound Written(const v1::SignedHead& head, bool new_head) {
    WrittenRound w;
    w.new_head = new_head;
    w.size = tree_.size();
    w.head = head;
    w.events = events_;
    w.tips.assign(std::make_move_iterator(tips_.begin()), std::make_move_iterator(tips_.end()));
    w.nodes = std::move(nodes_);
    return w;
  }
  const absl::flat_hash_map<std::string, StreamTip>& tips() const { return tips_; }
  merkle::CompactRange TakeTree() { return std::move(tree_); }

  // Every request's answer, in request order; new commits carry `head`.
  std::vector<Completion> Answers(const v1::SignedHead& head);

 private:
  void Decide(size_t i);
  // True when idempotency answers request i (a replay or a reused key).
  bool Replayed(size_t i);
  absl::Status CheckPreconditions(const v1::AppendRequest& req);
  absl::Status CheckCursors(const v1::AppendRequest& req);
  absl::StatusOr<std::vector<uint64_t>> NextVersions(const v1::AppendRequest& req);
  void Apply(size_t i, const std::vector<uint64_t>& versions);
  void PutEvent(const v1::EventInput& e, const Hash& payload_hash, uint64_t version,
                v1::Commit* commit);
  void RecordKeys();
  absl::StatusOr<uint64_t> VersionOf(const std::string& stream);
  absl::StatusOr<uint64_t> CursorOf(const std::string& name);
  absl::StatusOr<Completion> Replay(size_t i);

  LocalLedger& ledger_;
  std::vector<Pending>& requests_;
  const absl::Time now_;
  const int64_t now_ns_;
  rocksdb::WriteBatch wb_;
  merkle::CompactRange tree_;
  // Stream -> its newest version (and that event's seq) within the round.
  absl::flat_hash_map<std::string, StreamTip> tips_;
  absl::flat_hash_map<std::string, StreamRun> streams_;  // for Check
  absl::flat_hash_map<std::string, uint64_t> cursors_;
  absl::flat_hash_map<std::string, int> keys_;  // idempotency key -> request
  std::vector<RoundResult> results_;
  std::vector<std::pair<merkle::NodeId, Hash>> nodes_;
  uint64_t events_ = 0;
};

absl::StatusOr<uint64_t> LocalLedger::Round::VersionOf(const std::string& stream) {
  if (auto it = tips_.find(stream); it != tips_.end()) return it->second.version;
  ASSIGN_OR_RETURN(uint64_t v, ledger_.ReadStreamVersion(stream));
  streams_.try_emplace(stream, StreamRun{v, {}});
  return v;
}

absl::StatusOr<uint64_t> LocalLedger::Round::CursorOf(const std::string& name) {
  if (auto it = cursors_.find(name); it != cursors_.end()) return it->second;
  std::string v;
  rocksdb::Status s =
      ledger_.db_->Get(rocksdb::ReadOptions(), ledger_.cf(schema::kCursors), name, &v);
  if (s.IsNotFound()) return uint64_t{0};
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading cursor ", name)));
  return DecodeBE64(v);
}

void LocalLedger::Round::Decide(size_t i) {
  RoundResult& r = results_[i];
  const v1::AppendRequest& req = requests_[i].request;
  // 1. Idempotency: a retry gets the original commit, never a second copy.
  if (Replayed(i)) return;
  // 2. Preconditions and cursor expectations, against the round so far.
  r.status = CheckPreconditions(req);
  if (r.status.ok()) r.status = CheckCursors(req);
  if (!r.status.ok()) return;
  // Versions for this request's events, computed before anything changes.
  absl::StatusOr<std::vector<uint64_t>> versions = NextVersions(req);
  if (!versions.ok()) {
    r.status = versions.status();
    return;
  }
  // 3. Apply: seqs, headers, indexes, tree.
  Apply(i, *versions);
}

bool LocalLedger::Round::Replayed(size_t i) {
  RoundResult& r = results_[i];
  const Pending& p = requests_[i];
  const std::string& key = p.request.idempotency_key();
  if (key.empty()) return false;
  if (auto it = keys_.find(key); it != keys_.end()) {
    if (requests_[it->second].content_hash == p.content_hash) {
      r.dedup_of = it->second;
    } else {
      r.status = KeyReused(results_[it->second].commit.first_seq());
    }
    return true;
  }
  std::string stored;
  rocksdb::Status s =
      ledger_.db_->Get(rocksdb::ReadOptions(), ledger_.cf(schema::kIdempotency), key, &stored);
  if (s.IsNotFound()) return false;
  if (!s.ok()) {
    r.status = FromRocks(s, "reading an idempotency key");
    return true;
  }
  v1::StoredIdempotency rec;
  if (!rec.ParseFromString(stored)) {
    r.status = absl::DataLossError("a stored idempotency record is damaged");
    return true;
  }
  absl::Time committed = absl::FromUnixNanos(rec.commit().commit_time_unix_nanos());
  if (committed + ledger_.options_.idempotency_window < now_) return false;  // expired: free again
  if (rec.content_sha256() == AsStringView(p.content_hash)) {
    r.commit = rec.commit();
    r.dedup_stored = true;
    r.dedup_head_size = rec.head_size();
  } else {
    r.status = KeyReused(rec.commit().first_seq());
  }
  return true;
}

absl::Status LocalLedger::Round::CheckPreconditions(const v1::AppendRequest& req) {
  for (int j = 0; j < req.preconditions_size(); ++j) {
    const v1::Precondition& pc = req.preconditions(j);
    ASSIGN_OR_RETURN(uint64_t v, VersionOf(pc.stream()));
    if (pc.has_must_not_exist()) {
      if (v != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("precondition ", j, ": stream ", pc.stream(), " exists (version ", v,
                         ") but the append requires that it does not"));
      }
    } else if (v != pc.expected_version()) {
      return absl::FailedPreconditionError(absl::StrCat("precondition ", j, ": stream ",
                                                        pc.stream(), " is at version ", v,
                                                        ", expected ", pc.expected_version()));
    }
  }
  return absl::OkStatus();
}

absl::Status LocalLedger::Round::CheckCursors(const v1::AppendRequest& req) {
  for (const v1::CursorUpdate& cu : req.cursor_updates()) {
    if (!cu.has_expected_position()) continue;
    ASSIGN_OR_RETURN(uint64_t pos, CursorOf(cu.name()));
    if (pos != cu.expected_position()) {
      return absl::FailedPreconditionError(absl::StrCat("cursor ", cu.name(), " is at ", pos,
                                                        ", expected ", cu.expected_position()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> LocalLedger::Round::NextVersions(
    const v1::AppendRequest& req) {
  absl::flat_hash_map<std::string, uint64_t> local;
  std::vector<uint64_t> versions;
  versions.reserve(req.events_size());
  for (const v1::EventInput& e : req.events()) {
    auto it = local.find(e.stream());
    if (it == local.end()) {
      ASSIGN_OR_RETURN(uint64_t cur, VersionOf(e.stream()));
      it = local.emplace(e.stream(), cur).first;
    }
    versions.push_back(++it->second);
  }
  return versions;
}

void LocalLedger::Round::Apply(size_t i, const std::vector<uint64_t>& versions) {
  const Pending& p = requests_[i];
  const v1::AppendRequest& req = p.request;
  v1::Commit& c = results_[i].commit;
  c.set_commit_time_unix_nanos(now_ns_);
  for (int j = 0; j < req.events_size(); ++j) {
    PutEvent(req.events(j), p.payload_hashes[j], versions[j], &c);
  }
  for (const v1::CursorUpdate& cu : req.cursor_updates()) {
    wb_.Put(ledger_.cf(schema::kCursors), cu.name(), BE64(cu.position()));
    cursors_[cu.name()] = cu.position();
  }
  if (!req.idempotency_key().empty()) {
    keys_[req.idempotency_key()] = static_cast<int>(i);
    results_[i].record_key = true;
  }
}

void LocalLedger::Round::PutEvent(const v1::EventInput& e, const Hash& payload_hash,
                                  uint64_t version, v1::Commit* commit) {
  const uint64_t seq = tree_.size() + 1;
  v1::EventHeader h;
  h.set_seq(seq);
  h.set_stream(e.stream());
  h.set_stream_version(version);
  h.set_type(e.type());
  h.set_commit_time_unix_nanos(now_ns_);
  *h.mutable_agencies() = e.agencies();
  h.set_subject(e.subject());
  h.set_payload_sha256(ToBytes(payload_hash));
  h.set_payload_size(e.payload().size());
  const std::string header_bytes = h.SerializeAsString();
  const std::string seq_key = BE64(seq);
  auto cf = [this](int i) { return ledger_.cf(i); };
  wb_.Put(cf(schema::kEvents), seq_key, header_bytes);
  wb_.Put(cf(schema::kPayloads), seq_key, e.payload());
  wb_.Put(cf(schema::kStreams), schema::PrefixedKey(e.stream(), version), seq_key);
  for (const std::string& a : e.agencies()) {
    wb_.Put(cf(schema::kAgencyIndex), schema::PrefixedKey(a, seq), "");
  }
  if (!e.subject().empty()) {
    wb_.Put(cf(schema::kSubjectIndex), schema::PrefixedKey(e.subject(), seq), "");
  }
  tree_.Append(merkle::HashLeaf(header_bytes), &nodes_);
  tips_[e.stream()] = StreamTip{version, seq};
  streams_[e.stream()].versions.push_back(version);
  if (commit->stream_versions_size() == 0) commit->set_first_seq(seq);
  commit->set_last_seq(seq);
  commit->add_stream_versions(version);
  ++events_;
}

void LocalLedger::Round::RecordKeys() {
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (!results_[i].record_key) continue;
    v1::StoredIdempotency rec;
    rec.set_content_sha256(std::string(AsStringView(requests_[i].content_hash)));
    *rec.mutable_commit() = results_[i].commit;
    rec.set_head_size(tree_.size());
    const std::string& key = requests_[i].request.idempotency_key();
    wb_.Put(ledger_.cf(schema::kIdempotency), key, rec.SerializeAsString());
    wb_.Put(ledger_.cf(schema::kIdemExpiry), schema::IdemExpiryKey(now_ns_, key), "");
  }
  // Leaves too: verify then names exactly which seq's header was altered.
  for (const auto& [id, hash] : nodes_)
    wb_.Put(ledger_.cf(schema::kMerkle), schema::MerkleKey(id), ToBytes(hash));
}

absl::StatusOr<LocalLedger::Completion> LocalLedger::Round::Replay(size_t i) {
  RoundResult& r = results_[i];
  v1::Commit c;
  if (r.dedup_of >= 0) {
    c = results_[r.dedup_of].commit;
  } else {
    ASSIGN_OR_RETURN(v1::SignedHead h, ledger_.ReadHeadAt(r.dedup_head_size));
    c = r.commit;
    *c.mutable_head() = std::move(h);
  }
  c.set_deduplicated(true);
  return Completion(std::move(requests_[i].done), std::move(c));
}

std::vector<LocalLedger::Completion> LocalLedger::Round::Answers(const v1::SignedHead& head) {
  // Heads first, so that a replay within the round copies a complete commit.
  for (RoundResult& r : results_) {
    if (r.status.ok() && r.dedup_of < 0 && !r.dedup_stored) *r.commit.mutable_head() = head;
  }
  std::vector<Completion> out;
  out.reserve(requests_.size());
  for (size_t i = 0; i < requests_.size(); ++i) {
    RoundResult& r = results_[i];
    if (!r.status.ok()) {
      out.emplace_back(std::move(requests_[i].done), r.status);
    } else if (r.dedup_of >= 0 || r.dedup_stored) {
      absl::StatusOr<Completion> replay = Replay(i);
      if (!replay.ok()) {
        out.emplace_back(std::move(requests_[i].done), replay.status());
      } else {
        out.push_back(*std::move(replay));
      }
    } else {
      out.emplace_back(std::move(requests_[i].done), r.commit);
    }
  }
  return out;
}

void LocalLedger::ProcessRound(std::vector<Pending>& requests) {
  Round round(*this, requests);
  round.Decide();
  // Nothing of a round that breaks an invariant is written or signed.
  if (absl::Status s = round.Check(tree_); !s.ok()) {
    FailStop(s, &requests);
    return;
  }
  const bool new_head = round.tree().size() != tree_.size();
  v1::SignedHead head = last_head_;
  if (new_head) {
    absl::StatusOr<v1::SignedHead> signed_head =
        SignHead(round.tree().size(), round.tree().Root(), round.now());
    if (signed_head.ok()) {
      if (absl::Status s = CheckHeadCovers(*signed_head, round.tree()); !s.ok()) signed_head = s;
    }
    if (!signed_head.ok()) {
      // Without a signed head nothing of the round may be written.
      FailStop(signed_head.status(), &requests);
      return;
    }
    head = *std::move(signed_head);
    round.batch().Put(cf(schema::kHeads), BE64(head.tree_size()), head.SerializeAsString());
  }
  bool wrote = false;
  if (round.batch().Count() > 0) {
    SweepIdempotency(round.now(), &round.batch());
    // Not synced here: the syncer fsyncs the WAL for this and any other
    // written rounds, and only then are they visible and answered. Readers
    // never see past the published size, so unsynced rounds stay invisible.
    rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &round.batch());
    if (!s.ok()) {
      FailStop(FromRocks(s, "writing a commit round"), &requests);
      return;
    }
    wrote = true;
  }
  if (stream_versions_.size() + round.tips().size() > 200'000) stream_versions_.clear();  // bounded
  for (const auto& [stream, tip] : round.tips()) stream_versions_[stream] = tip.version;
  if (new_head) last_head_ = head;
  WrittenRound written = round.Written(head, new_head);
  written.wrote = wrote;
  tree_ = round.TakeTree();
  rounds_.fetch_add(1);
  written.answers = round.Answers(head);
  HandToSyncer(std::move(written));
}

}  // namespace careloop::storage
