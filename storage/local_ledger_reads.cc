// LocalLedger's read side: events by seq, stream and index, heads, proofs,
// receipts, cursors and tails. Reads never block the writer; they see only
// what the syncer has published, and check what they read back.
#include <algorithm>
#include <memory>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "storage/local_ledger.h"
#include "storage/node_store.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {

using schema::AsView;
using schema::BE64;
using schema::DecodeBE64;

namespace {

// Every event is written with its payload and nothing removes one (there is
// no redaction yet): a payload that is not there is damage.
absl::Status MissingPayload(uint64_t seq) {
  return absl::DataLossError(absl::StrCat("the payload of event seq ", seq,
                                          " is missing from the ledger; run careloop ledger "
                                          "verify and restore from a backup"));
}

// Read back through an index, an event that is not the one the entry is for:
// the read fails instead of answering with another event.
absl::Status IndexDamage(absl::string_view index, uint64_t seq) {
  return absl::DataLossError(absl::StrCat(index, " of the ledger points at event seq ", seq,
                                          ", which it does not belong to; run careloop ledger "
                                          "verify and restore from a backup"));
}

// A payload read beside its header must be the one the header hashes: a
// flipped byte that got past RocksDB's checksums is caught here.
absl::Status AttachPayload(v1::Event* ev, std::string payload) {
  const v1::EventHeader& h = ev->header();
  if (payload.size() != h.payload_size() || AsStringView(Sha256(payload)) != h.payload_sha256()) {
    return absl::DataLossError(absl::StrCat("the payload of event seq ", h.seq(),
                                            " does not match its hash; run careloop ledger "
                                            "verify and restore from a backup"));
  }
  ev->set_payload(std::move(payload));
  return absl::OkStatus();
}

absl::StatusOr<v1::Event> DecodeEvent(uint64_t seq, std::string header_bytes) {
  v1::Event ev;
  if (!ev.mutable_header()->ParseFromString(header_bytes) || ev.header().seq() != seq) {
    return absl::DataLossError(absl::StrCat("event seq ", seq, ": stored header is damaged"));
  }
  ev.set_header_bytes(std::move(header_bytes));
  return ev;
}

// Every event read must be the one the tree holds at its seq: its header
// hashes to the stored leaf. A record rewritten whole, which RocksDB's block
// checksums cannot see, fails the read instead of being answered.
absl::Status NotTheTreesLeaf(uint64_t seq) {
  return absl::DataLossError(absl::StrCat("event seq ", seq,
                                          " is not the one the tree holds at its seq; run "
                                          "careloop ledger verify and restore from a backup"));
}

// Events at scattered seqs (read through an index): one batched read of
// their leaves (from the node cache where it has them).
template <typename Events>
absl::Status CheckLeaves(merkle::NodeReader& reader, const Events& events) {
  std::vector<merkle::NodeId> ids;
  for (const v1::Event& e : events) ids.push_back({0, e.header().seq() - 1});
  if (ids.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<Hash> leaves, reader.ReadNodes(ids));
  size_t i = 0;
  for (const v1::Event& e : events) {
    if (merkle::HashLeaf(e.header_bytes()) != leaves[i++]) return NotTheTreesLeaf(e.header().seq());
  }
  return absl::OkStatus();
}

// Events at consecutive seqs (a read of the log): the leaves are adjacent
// keys of the tree's column family, read with one iterator.
template <typename Events>
absl::Status CheckConsecutiveLeaves(rocksdb::Iterator* it, const Events& events) {
  bool first = true;
  for (const v1::Event& e : events) {
    const merkle::NodeId id{0, e.header().seq() - 1};
    const std::string key = schema::MerkleKey(id);
    if (first) {
      it->Seek(key);
      first = false;
    } else if (it->Valid()) {
      it->Next();
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the tree's leaves"));
    if (!it->Valid() || AsView(it->key()) != key) {
      return absl::DataLossError(absl::StrCat("tree node level 0 index ", id.index, " is missing"));
    }
    if (AsView(it->value()) != AsStringView(merkle::HashLeaf(e.header_bytes())))
      return NotTheTreesLeaf(e.header().seq());
  }
  return absl::OkStatus();
}

// The bytes of one read page: events are added while they fit, and the
// first always does. Counted from the header (which records its payload's
// size) before any payload is read.
class PageBytes {
 public:
  PageBytes(size_t max, bool payloads) : max_(max), payloads_(payloads) {}
  bool Fits(const v1::Event& e) {
    // The header twice (its bytes and the decoded copy) and its payload.
    const size_t bytes =
        2 * e.header_bytes().size() + (payloads_ ? e.header().payload_size() : 0) + 16;
    if (events_ > 0 && used_ + bytes > max_) return false;
    used_ += bytes;
    ++events_;
    return true;
  }

 private:
  const size_t max_;
  const bool payloads_;
  size_t used_ = 0;
  size_t events_ = 0;
};

// A tree size a caller asked for (0: the ledger's size), within the ledger.
absl::StatusOr<uint64_t> SizeInLedger(uint64_t asked, uint64_t size) {
  if (asked == 0) return size;
  if (asked > size) {
    return absl::OutOfRangeError(
        absl::StrCat("tree size ", asked, " is beyond the ledger (", size, ")"));
  }
  return asked;
}

// The seqs a stream or index lists under `name` from `first` (a version or
// a seq) on, in key order: none past the published `size`, at most `limit`
// (then `more`). `seq_of` reads an entry's seq.
template <typename SeqOf>
absl::Status CollectSeqs(rocksdb::Iterator* it, const std::string& name, uint64_t first,
                         uint64_t size, uint32_t limit, SeqOf seq_of, std::vector<uint64_t>* seqs,
                         bool* more) {
  const std::string prefix = name + std::string(1, '\0');
  for (it->Seek(schema::PrefixedKey(name, first)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const uint64_t seq = seq_of(*it);
    if (seq > size) break;  // committed but not yet published
    if (seqs->size() == limit) {
      *more = true;
      break;
    }
    seqs->push_back(seq);
  }
  return FromRocks(it->status(), "reading an index");
}

}  // namespace

absl::Status LocalLedger::WaitForSeq(uint64_t seq, absl::Duration timeout) {
  if (size() >= seq) return absl::OkStatus();
  absl::MutexLock lock(&state_mu_);
  auto ready = [this, seq]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return size_.load() >= seq || !writer_status_.ok() || notifier_stop_;
  };
  if (!state_mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("the ledger has not reached seq ", seq,
                                                    " (now ", size_.load(), ") within ",
                                                    absl::FormatDuration(timeout)));
  }
  if (size_.load() >= seq) return absl::OkStatus();
  if (!writer_status_.ok()) return writer_status_;
  return absl::UnavailableError("the ledger is shutting down");
}

uint32_t LocalLedger::ClampLimit(uint32_t limit) const {
  if (limit == 0 || limit > options_.limits.max_read_limit) return options_.limits.max_read_limit;
  return limit;
}

absl::StatusOr<std::vector<v1::Event>> LocalLedger::ReadEventsBySeq(
    const std::vector<uint64_t>& seqs, bool include_payloads, bool* cut) {
  std::vector<v1::Event> out;
  if (seqs.empty()) return out;
  std::vector<std::string> keys;
  keys.reserve(seqs.size());
  for (uint64_t s : seqs) keys.push_back(BE64(s));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf(schema::kEvents));
  std::vector<std::string> headers;
  std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &headers);
  out.reserve(seqs.size());
  PageBytes page(options_.limits.max_read_bytes, include_payloads);
  for (size_t i = 0; i < seqs.size(); ++i) {
    RETURN_IF_ERROR(FromRocks(st[i], absl::StrCat("reading event seq ", seqs[i])));
    ASSIGN_OR_RETURN(v1::Event ev, DecodeEvent(seqs[i], std::move(headers[i])));
    if (!page.Fits(ev)) {
      *cut = true;
      break;
    }
    out.push_back(std::move(ev));
  }
  if (include_payloads) {
    // Only the payloads of the events that fit the page are read.
    slices.resize(out.size());
    std::vector<rocksdb::ColumnFamilyHandle*> pcfs(out.size(), cf(schema::kPayloads));
    std::vector<std::string> payloads;
    std::vector<rocksdb::Status> pst =
        db_->MultiGet(rocksdb::ReadOptions(), pcfs, slices, &payloads);
    for (size_t i = 0; i < out.size(); ++i) {
      if (pst[i].IsNotFound()) return MissingPayload(seqs[i]);
      RETURN_IF_ERROR(FromRocks(pst[i], absl::StrCat("reading payload seq ", seqs[i])));
      RETURN_IF_ERROR(AttachPayload(&out[i], std::move(payloads[i])));
    }
  }
  RocksNodeReader leaves(db_.get(), cf(schema::kMerkle), &nodes_, /*fill=*/false);
  RETURN_IF_ERROR(CheckLeaves(leaves, out));
  return out;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::Read(const v1::ReadRequest& req) {
  RETURN_IF_ERROR(damage());
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint64_t from = std::max<uint64_t>(1, req.from_seq());
  const uint32_t limit = ClampLimit(req.limit());
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  if (from > size) return resp;
  const uint64_t last = std::min<uint64_t>(size, from + limit - 1);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kEvents)));
  std::unique_ptr<rocksdb::Iterator> pit;
  if (req.include_payloads()) {
    pit.reset(db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kPayloads)));
    pit->Seek(BE64(from));
  }
  PageBytes page(options_.limits.max_read_bytes, req.include_payloads());
  uint64_t expect = from;
  for (it->Seek(BE64(from)); it->Valid() && expect <= last; it->Next(), ++expect) {
    uint64_t seq = DecodeBE64(AsView(it->key()));
    if (seq != expect) {
      return absl::DataLossError(absl::StrCat("event seq ", expect, " is missing from the ledger"));
    }
    ASSIGN_OR_RETURN(v1::Event ev, DecodeEvent(seq, it->value().ToString()));
    if (!page.Fits(ev)) {
      resp.set_more(true);
      break;
    }
    if (pit) {
      while (pit->Valid() && DecodeBE64(AsView(pit->key())) < seq) pit->Next();
      RETURN_IF_ERROR(FromRocks(pit->status(), "reading payloads"));
      if (!pit->Valid() || DecodeBE64(AsView(pit->key())) != seq) return MissingPayload(seq);
      RETURN_IF_ERROR(AttachPayload(&ev, pit->value().ToString()));
    }
    *resp.add_events() = std::move(ev);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading events"));
  if (expect <= last && !resp.more()) {
    return absl::DataLossError(absl::StrCat("event seq ", expect, " is missing from the ledger"));
  }
  std::unique_ptr<rocksdb::Iterator> leaves(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kMerkle)));
  RETURN_IF_ERROR(CheckConsecutiveLeaves(leaves.get(), resp.events()));
  if (!resp.more()) resp.set_more(last < size);
  return resp;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::ReadStream(const v1::ReadStreamRequest& req) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(req.stream()));
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint32_t limit = ClampLimit(req.limit());
  std::vector<uint64_t> seqs;
  bool more = false;
  const uint64_t from = std::max<uint64_t>(1, req.from_version());
  ASSIGN_OR_RETURN(std::optional<uint64_t> known, KnownVersion(req.stream(), size));
  if (known.has_value()) {
    // The newest version is known: the versions asked for are point reads.
    if (from <= *known) {
      const uint64_t count = std::min<uint64_t>(limit, *known - from + 1);
      more = from + count - 1 < *known;
      std::vector<std::string> keys;
      keys.reserve(count);
      for (uint64_t v = from; v < from + count; ++v)
        keys.push_back(schema::PrefixedKey(req.stream(), v));
      std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
      std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf(schema::kStreams));
      std::vector<std::string> values;
      std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &values);
      for (size_t i = 0; i < st.size(); ++i) {
        if (st[i].IsNotFound()) {
          return absl::DataLossError(absl::StrCat("stream ", req.stream(), " has no version ",
                                                  from + i, " below its newest (", *known, ")"));
        }
        RETURN_IF_ERROR(FromRocks(st[i], "reading a stream"));
        seqs.push_back(DecodeBE64(values[i]));
      }
    }
  } else {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kStreams)));
    RETURN_IF_ERROR(CollectSeqs(
        it.get(), req.stream(), from, size, limit,
        [](const rocksdb::Iterator& i) { return DecodeBE64(AsView(i.value())); }, &seqs, &more));
  }
  bool cut = false;
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   ReadEventsBySeq(seqs, req.include_payloads(), &cut));
  more = more || cut;
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::EventHeader& h = events[i].header();
    if (h.stream() != req.stream() || h.stream_version() != from + i)
      return IndexDamage("the stream index", h.seq());
  }
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  resp.set_more(more);
  for (auto& e : events) *resp.add_events() = std::move(e);
  return resp;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::ReadIndex(const v1::ReadIndexRequest& req) {
  RETURN_IF_ERROR(damage());
  int cf_index;
  std::string key;
  switch (req.key_case()) {
    case v1::ReadIndexRequest::kAgency:
      RETURN_IF_ERROR(ValidateAgencyId(req.agency()));
      cf_index = schema::kAgencyIndex;
      key = req.agency();
      break;
    case v1::ReadIndexRequest::kSubject:
      RETURN_IF_ERROR(ValidateToken(req.subject(), "subject id"));
      cf_index = schema::kSubjectIndex;
      key = req.subject();
      break;
    default:
      return absl::InvalidArgumentError("name an agency or a subject to read by");
  }
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint32_t limit = ClampLimit(req.limit());
  std::vector<uint64_t> seqs;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(cf_index)));
  bool more = false;
  RETURN_IF_ERROR(CollectSeqs(
      it.get(), key, req.after_seq() + 1, size, limit,
      [](const rocksdb::Iterator& i) {
        return DecodeBE64(AsView(i.key()).substr(i.key().size() - 8));
      },
      &seqs, &more));
  bool cut = false;
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   ReadEventsBySeq(seqs, req.include_payloads(), &cut));
  more = more || cut;
  for (const v1::Event& e : events) {
    const v1::EventHeader& h = e.header();
    const bool names = cf_index == schema::kSubjectIndex ? h.subject() == key
                                                         : absl::c_linear_search(h.agencies(), key);
    if (!names) return IndexDamage("an index", h.seq());
  }
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  resp.set_more(more);
  for (auto& e : events) *resp.add_events() = std::move(e);
  return resp;
}

absl::StatusOr<uint64_t> LocalLedger::StreamVersion(absl::string_view stream) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(stream));
  const uint64_t size = this->size();
  ASSIGN_OR_RETURN(std::optional<uint64_t> known, KnownVersion(stream, size));
  if (known.has_value()) return *known;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kStreams)));
  const std::string prefix = std::string(stream) + std::string(1, '\0');
  // Walk back from the newest version past any that are not yet published.
  it->SeekForPrev(schema::PrefixedKey(stream, UINT64_MAX));
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    if (DecodeBE64(AsView(it->value())) <= size) {
      return DecodeBE64(AsView(it->key()).substr(prefix.size()));
    }
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading a stream version"));
  return uint64_t{0};
}

absl::StatusOr<v1::SignedHead> LocalLedger::ReadHeadAt(uint64_t size) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kHeads), BE64(size), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("no tree head was signed at size ", size,
                                            " (heads are signed once per commit round)"));
  }
  RETURN_IF_ERROR(FromRocks(s, "reading a tree head"));
  v1::SignedHead head;
  if (!head.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("the tree head at size ", size, " is damaged"));
  }
  return head;
}

absl::StatusOr<v1::SignedHead> LocalLedger::Head(uint64_t tree_size) {
  RETURN_IF_ERROR(damage());
  if (tree_size == 0) {
    absl::MutexLock lock(&state_mu_);
    return head_;
  }
  ASSIGN_OR_RETURN(tree_size, SizeInLedger(tree_size, size()));
  return ReadHeadAt(tree_size);
}

absl::StatusOr<v1::InclusionProof> LocalLedger::ProveInclusion(uint64_t seq, uint64_t tree_size) {
  RETURN_IF_ERROR(damage());
  ASSIGN_OR_RETURN(tree_size, SizeInLedger(tree_size, size()));
  if (seq == 0 || seq > tree_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq ", seq, " is not in a tree of size ", tree_size));
  }
  RocksNodeReader reader(db_.get(), cf(schema::kMerkle), &nodes_);
  ASSIGN_OR_RETURN(std::vector<Hash> hashes,
                   merkle::HashRanges(reader, merkle::InclusionRanges(seq - 1, tree_size)));
  v1::InclusionProof proof;
  proof.set_leaf_index(seq - 1);
  proof.set_tree_size(tree_size);
  for (const Hash& h : hashes) proof.add_hashes(ToBytes(h));
  return proof;
}

absl::StatusOr<v1::ConsistencyProof> LocalLedger::ProveConsistency(uint64_t size1, uint64_t size2) {
  RETURN_IF_ERROR(damage());
  ASSIGN_OR_RETURN(size2, SizeInLedger(size2, size()));
  if (size1 == 0 || size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a consistency proof needs 0 < size1 <= size2; got ", size1, " and ", size2));
  }
  v1::ConsistencyProof proof;
  proof.set_size1(size1);
  proof.set_size2(size2);
  if (size1 == size2) return proof;
  RocksNodeReader reader(db_.get(), cf(schema::kMerkle), &nodes_);
  ASSIGN_OR_RETURN(std::vector<Hash> hashes,
                   merkle::HashRanges(reader, merkle::ConsistencyRanges(size1, size2)));
  for (const Hash& h : hashes) proof.add_hashes(ToBytes(h));
  return proof;
}

absl::StatusOr<v1::Receipt> LocalLedger::GetReceipt(uint64_t seq) {
  RETURN_IF_ERROR(damage());
  const uint64_t size = this->size();
  if (seq == 0 || seq > size) {
    return absl::NotFoundError(
        absl::StrCat("no event with seq ", seq, " (the ledger has ", size, ")"));
  }
  v1::Receipt receipt;
  std::string header;
  RETURN_IF_ERROR(
      FromRocks(db_->Get(rocksdb::ReadOptions(), cf(schema::kEvents), BE64(seq), &header),
                absl::StrCat("reading event seq ", seq)));
  receipt.set_header_bytes(std::move(header));
  // The head of the event's round: the first head at or after its seq.
  {
    absl::MutexLock lock(&state_mu_);
    if (!recent_heads_.empty() && recent_heads_.front().tree_size() < seq) {
      auto h = std::lower_bound(
          recent_heads_.begin(), recent_heads_.end(), seq,
          [](const v1::SignedHead& head, uint64_t s) { return head.tree_size() < s; });
      if (h != recent_heads_.end()) *receipt.mutable_head() = *h;
    }
  }
  if (receipt.has_head()) {
    ASSIGN_OR_RETURN(*receipt.mutable_proof(), ProveInclusion(seq, receipt.head().tree_size()));
    return receipt;
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kHeads)));
  it->Seek(BE64(seq));
  RETURN_IF_ERROR(FromRocks(it->status(), "reading tree heads"));
  if (!it->Valid()) return absl::DataLossError(absl::StrCat("no tree head covers seq ", seq));
  if (!receipt.mutable_head()->ParseFromString(it->value().ToString())) {
    return absl::DataLossError("a stored tree head is damaged");
  }
  ASSIGN_OR_RETURN(*receipt.mutable_proof(), ProveInclusion(seq, receipt.head().tree_size()));
  return receipt;
}

absl::StatusOr<std::optional<uint64_t>> LocalLedger::GetCursor(absl::string_view name) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(name, "cursor"));
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kCursors), std::string(name), &v);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  RETURN_IF_ERROR(FromRocks(s, "reading a cursor"));
  return std::optional<uint64_t>(DecodeBE64(v));
}

namespace {
class LocalTailStream final : public TailStream {
 public:
  LocalTailStream(LocalLedger* ledger, uint64_t from, bool payloads)
      : ledger_(ledger), next_(std::max<uint64_t>(1, from)), payloads_(payloads) {}

  absl::StatusOr<std::vector<v1::Event>> Next(absl::Duration timeout) override {
    if (cancelled_.load()) return absl::CancelledError("tail cancelled");
    absl::Status waited = ledger_->WaitForSeqOrCancel(next_, timeout, &cancelled_);
    if (cancelled_.load()) return absl::CancelledError("tail cancelled");
    if (absl::IsDeadlineExceeded(waited)) return std::vector<v1::Event>();
    RETURN_IF_ERROR(waited);
    v1::ReadRequest req;
    req.set_from_seq(next_);
    req.set_include_payloads(payloads_);
    ASSIGN_OR_RETURN(v1::ReadResponse resp, ledger_->Read(req));
    std::vector<v1::Event> out(std::make_move_iterator(resp.mutable_events()->begin()),
                               std::make_move_iterator(resp.mutable_events()->end()));
    if (!out.empty()) next_ = out.back().header().seq() + 1;
    return out;
  }
  void Cancel() override { ledger_->CancelWaiters(&cancelled_); }

 private:
  LocalLedger* ledger_;
  uint64_t next_;
  bool payloads_;
  std::atomic<bool> cancelled_{false};
};
}  // namespace

absl::Status LocalLedger::WaitForSeqOrCancel(uint64_t seq, absl::Duration timeout,
                                             const std::atomic<bool>* cancelled) {
  absl::MutexLock lock(&state_mu_);
  auto ready = [this, seq, cancelled]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return size_.load() >= seq || !writer_status_.ok() || notifier_stop_ || cancelled->load();
  };
  if (!state_mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError("no new events");
  }
  if (size_.load() >= seq || cancelled->load()) return absl::OkStatus();
  if (!writer_status_.ok()) return writer_status_;
  return absl::UnavailableError("the ledger is shutting down");
}

void LocalLedger::CancelWaiters(std::atomic<bool>* flag) {
  // Setting the flag under the mutex makes waiting conditions re-evaluate.
  absl::MutexLock lock(&state_mu_);
  flag->store(true);
}

std::unique_ptr<TailStream> LocalLedger::Tail(uint64_t from_seq, bool include_payloads) {
  return std::make_unique<LocalTailStream>(this, from_seq, include_payloads);
}

}  // namespace careloop::storage
