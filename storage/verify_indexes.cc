#include "storage/verify_indexes.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "careloop/v1/ledger.pb.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"
#include "storage/validate.h"

namespace careloop::storage {
namespace {

using schema::AsView;
using schema::BE64;
using schema::DecodeBE64;

// "<name>\0<BE64(n)>" split into its parts; nullopt if it is not one.
struct PrefixedParts {
  absl::string_view name;
  uint64_t n = 0;
};
std::optional<PrefixedParts> SplitPrefixedKey(absl::string_view key) {
  if (key.size() < 10 || key[key.size() - 9] != '\0') return std::nullopt;
  return PrefixedParts{key.substr(0, key.size() - 9), DecodeBE64(key.substr(key.size() - 8))};
}

// The three index column families the events name entries in.
constexpr int kNamedCfs[] = {schema::kStreams, schema::kAgencyIndex, schema::kSubjectIndex};

class IndexChecker {
 public:
  IndexChecker(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
               const rocksdb::ReadOptions& ro, uint64_t events, const std::atomic<bool>* cancel)
      : db_(db), cfs_(cfs), ro_(ro), events_(events), cancel_(cancel) {}

  Finding Run(const ExpectedIndexes& expected, const IndexTally& stored) {
    const bool whole = stored.readable && stored.digest == expected.digest &&
                       stored.stream_entries == expected.stream_entries &&
                       stored.agency_entries == expected.agency_entries &&
                       stored.subject_entries == expected.subject_entries;
    if (!whole) FindIndexDamage(expected);
    Idempotency();
    Cursors();
    return first_;
  }

 private:
  // The slow path, when the digests differ: which entry, of which seq.
  void FindIndexDamage(const ExpectedIndexes& expected) {
    uint64_t streams = 0;
    uint64_t agencies = 0;
    uint64_t subjects = 0;
    Streams(&streams);
    NamedIndex(schema::kAgencyIndex, "agency index", &agencies);
    NamedIndex(schema::kSubjectIndex, "subject index", &subjects);
    const bool counts_differ = streams != expected.stream_entries ||
                               agencies != expected.agency_entries ||
                               subjects != expected.subject_entries;
    // An entry missing, pointing elsewhere, or an index unreadable: the
    // events say which seq lost its entry.
    if (counts_differ || unreadable_ || suspect_.found()) {
      Finding f = EventsWithoutTheirEntries();
      Keep(f.found() ? f : suspect_);
    }
    if (counts_differ && !first_.found()) {
      Keep({events_ + 1, absl::StrCat("the indexes hold ", streams, "/", agencies, "/", subjects,
                                      " stream/agency/subject entries but the events name ",
                                      expected.stream_entries, "/", expected.agency_entries, "/",
                                      expected.subject_entries)});
    }
  }

  // The earliest finding wins.
  void Keep(const Finding& f) {
    if (f.Before(first_)) first_ = f;
  }
  // A stream entry that points at the wrong event is damage to the entry of
  // the event it should have pointed at, which the events name; `f` is
  // reported only when they name none.
  void Suspect(const Finding& f) {
    if (f.Before(suspect_)) suspect_ = f;
  }

  // The header of seq, or nullopt (and a finding kept, or only suspected)
  // when it cannot be read.
  std::optional<v1::EventHeader> Header(uint64_t seq, absl::string_view what,
                                        bool suspect = false) {
    auto report = [&](const Finding& f) { suspect ? Suspect(f) : Keep(f); };
    if (seq == 0 || seq > events_) {
      report({std::clamp<uint64_t>(seq, 1, events_ + 1),
              absl::StrCat(what, " points at seq ", seq, ", which is not in the log (", events_,
                           " events)")});
      return std::nullopt;
    }
    std::string bytes;
    v1::EventHeader h;
    if (!db_->Get(ro_, cfs_[schema::kEvents], BE64(seq), &bytes).ok() ||
        !h.ParseFromString(bytes) || h.seq() != seq) {
      report({seq, absl::StrCat(what, " points at seq ", seq, ", whose header cannot be read")});
      return std::nullopt;
    }
    return h;
  }

  void IteratorStatus(rocksdb::Iterator* it, absl::string_view cf) {
    absl::Status s = FromRocks(it->status(), absl::StrCat("reading ", cf));
    if (s.ok()) return;
    unreadable_ = true;
    Keep({events_ + 1, absl::StrCat("storage corruption in ", cf, ": ", s.message())});
  }

  // streams: stream\0BE64(version) -> BE64(seq); versions 1, 2, 3... per
  // stream, each the event of that stream and version. Every entry is
  // checked, so that the earliest seq concerned is the one named.
  void Streams(uint64_t* count) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, cfs_[schema::kStreams]));
    std::string stream;
    uint64_t last_version = 0;
    for (it->SeekToFirst(); it->Valid() && !IsCancelled(cancel_); it->Next()) {
      ++*count;
      absl::string_view value = AsView(it->value());
      const uint64_t seq = value.size() == 8 ? DecodeBE64(value) : 0;
      std::optional<PrefixedParts> key = SplitPrefixedKey(AsView(it->key()));
      if (!key.has_value() || value.size() != 8) {
        Suspect({std::min(seq == 0 ? events_ + 1 : seq, events_ + 1),
                 "a stream index entry is malformed"});
        continue;
      }
      if (key->name != stream) {
        stream = std::string(key->name);
        last_version = 0;
      }
      std::optional<v1::EventHeader> h = Header(seq, "a stream index entry", /*suspect=*/true);
      if (h.has_value() && (h->stream() != key->name || h->stream_version() != key->n)) {
        Suspect({seq, absl::StrCat("the stream index entry for version ", key->n, " points at seq ",
                                   seq, ", an event of another stream or version")});
      } else if (h.has_value() && key->n != last_version + 1) {
        Suspect({seq, absl::StrCat("stream index versions jump from ", last_version, " to ", key->n,
                                   " at seq ", seq)});
      }
      last_version = key->n;
    }
    IteratorStatus(it.get(), "the stream index");
  }

  // agency_index / subject_index: name\0BE64(seq) -> "", the event naming it.
  void NamedIndex(int cf, absl::string_view what, uint64_t* count) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, cfs_[cf]));
    for (it->SeekToFirst(); it->Valid() && !IsCancelled(cancel_); it->Next()) {
      ++*count;
      std::optional<PrefixedParts> key = SplitPrefixedKey(AsView(it->key()));
      if (!key.has_value() || !it->value().empty()) {
        const uint64_t seq = key.has_value() ? key->n : events_ + 1;
        Keep({std::min(seq, events_ + 1), absl::StrCat("an entry of the ", what, " is malformed")});
        continue;
      }
      std::optional<v1::EventHeader> h = Header(key->n, absl::StrCat("an entry of the ", what));
      if (!h.has_value()) continue;
      bool named = false;
      if (cf == schema::kSubjectIndex) {
        named = h->subject() == key->name;
      } else {
        for (const std::string& a : h->agencies()) named = named || a == key->name;
      }
      if (!named) {
        Keep({key->n, absl::StrCat("an entry of the ", what, " points at seq ", key->n,
                                   ", an event that does not name it")});
      }
    }
    IteratorStatus(it.get(), absl::StrCat("the ", what));
  }

  // The first event whose own index entries are missing or unreadable.
  Finding EventsWithoutTheirEntries() {
    std::unique_ptr<rocksdb::Iterator> ev(db_->NewIterator(ro_, cfs_[schema::kEvents]));
    v1::EventHeader h;
    std::string value;
    for (ev->SeekToFirst(); ev->Valid() && !IsCancelled(cancel_); ev->Next()) {
      if (!h.ParseFromArray(ev->value().data(), static_cast<int>(ev->value().size()))) continue;
      const uint64_t seq = h.seq();
      rocksdb::Status s = db_->Get(ro_, cfs_[schema::kStreams],
                                   schema::PrefixedKey(h.stream(), h.stream_version()), &value);
      if (!s.ok() || value != BE64(seq)) {
        return {seq,
                absl::StrCat("event seq ", seq, ": its stream index entry (version ",
                             h.stream_version(), ") is ", s.ok() ? "another event's" : "missing",
                             s.ok() || s.IsNotFound() ? "" : " or unreadable")};
      }
      for (const std::string& a : h.agencies()) {
        s = db_->Get(ro_, cfs_[schema::kAgencyIndex], schema::PrefixedKey(a, seq), &value);
        if (!s.ok())
          return {seq, absl::StrCat("event seq ", seq, ": an agency index entry is missing")};
      }
      if (!h.subject().empty()) {
        s = db_->Get(ro_, cfs_[schema::kSubjectIndex], schema::PrefixedKey(h.subject(), seq),
                     &value);
        if (!s.ok())
          return {seq, absl::StrCat("event seq ", seq, ": its subject index entry is missing")};
      }
    }
    return {};
  }

  // idempotency: key -> the original commit; its events, versions, commit
  // time and head must be in the log, and its expiry entry in idem_expiry.
  // Records come in key order (random in seq); they are checked in chunks
  // sorted by seq, with one forward iterator per column family, instead of
  // point reads: a chunk's events, heads and expiry entries are then read
  // block by block, in key order.
  struct IdemRecord {
    std::string key;
    v1::StoredIdempotency rec;
  };
  static constexpr size_t kIdemChunk = 1 << 16;

  void Idempotency() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, cfs_[schema::kIdempotency]));
    std::vector<IdemRecord> chunk;
    uint64_t n = 0;
    for (it->SeekToFirst(); it->Valid() && !IsCancelled(cancel_); it->Next()) {
      ++n;
      IdemRecord r{std::string(AsView(it->key())), {}};
      if (!r.rec.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        Keep({kNoPosition,
              absl::StrCat("idempotency record ", n, " (in key order) does not parse")});
        continue;
      }
      chunk.push_back(std::move(r));
      if (chunk.size() == kIdemChunk) CheckIdempotencyChunk(&chunk);
    }
    IteratorStatus(it.get(), "the idempotency records");
    CheckIdempotencyChunk(&chunk);
  }

  void CheckIdempotencyChunk(std::vector<IdemRecord>* chunk) {
    std::sort(chunk->begin(), chunk->end(), [](const IdemRecord& a, const IdemRecord& b) {
      return a.rec.commit().first_seq() < b.rec.commit().first_seq();
    });
    SeekReader reader(db_, cfs_, ro_);
    for (const IdemRecord& r : *chunk) {
      if (IsCancelled(cancel_)) break;
      Keep(IdempotencyRecord(r.rec, r.key, reader));
    }
    reader.Status(this);
    chunk->clear();
  }

  // Forward iterators over the events, heads and expiry entries, for keys
  // asked in (mostly) ascending order.
  class SeekReader {
   public:
    SeekReader(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
               const rocksdb::ReadOptions& ro)
        : events_(db->NewIterator(ro, cfs[schema::kEvents])),
          heads_(db->NewIterator(ro, cfs[schema::kHeads])),
          expiry_(db->NewIterator(ro, cfs[schema::kIdemExpiry])) {}
    // The value at exactly `key`, or nullopt.
    static std::optional<absl::string_view> At(rocksdb::Iterator* it, absl::string_view key) {
      it->Seek(rocksdb::Slice(key.data(), key.size()));
      if (!it->Valid() || AsView(it->key()) != key) return std::nullopt;
      return AsView(it->value());
    }
    rocksdb::Iterator* events() { return events_.get(); }
    rocksdb::Iterator* heads() { return heads_.get(); }
    rocksdb::Iterator* expiry() { return expiry_.get(); }
    void Status(IndexChecker* checker) {
      checker->IteratorStatus(events_.get(), "the events");
      checker->IteratorStatus(heads_.get(), "the tree heads");
      checker->IteratorStatus(expiry_.get(), "the idempotency expiry entries");
    }

   private:
    std::unique_ptr<rocksdb::Iterator> events_, heads_, expiry_;
  };

  Finding IdempotencyRecord(const v1::StoredIdempotency& rec, absl::string_view key,
                            SeekReader& reader) {
    const v1::Commit& c = rec.commit();
    const uint64_t first = c.first_seq();
    if (first == 0) {
      if (c.last_seq() != 0 || c.stream_versions_size() != 0)
        return {kNoPosition, "an idempotency record of a commit without events names events"};
    } else if (c.last_seq() < first || c.last_seq() > events_ ||
               static_cast<uint64_t>(c.stream_versions_size()) != c.last_seq() - first + 1) {
      return {std::min(first, events_ + 1),
              absl::StrCat("the idempotency record of seq ", first, ".", c.last_seq(),
                           " does not match the log")};
    }
    for (uint64_t seq = first; first != 0 && seq <= c.last_seq(); ++seq) {
      std::optional<absl::string_view> bytes = SeekReader::At(reader.events(), BE64(seq));
      v1::EventHeader h;
      if (!bytes.has_value() || !h.ParseFromArray(bytes->data(), static_cast<int>(bytes->size())) ||
          h.seq() != seq) {
        return {seq, absl::StrCat("an idempotency record points at seq ", seq,
                                  ", whose header cannot be read")};
      }
      if (h.stream_version() != c.stream_versions(static_cast<int>(seq - first)) ||
          h.commit_time_unix_nanos() != c.commit_time_unix_nanos()) {
        return {seq, absl::StrCat("the idempotency record of seq ", first,
                                  " differs from event seq ", seq)};
      }
    }
    if (rec.head_size() < c.last_seq() || rec.head_size() > events_ ||
        !SeekReader::At(reader.heads(), BE64(rec.head_size())).has_value()) {
      return {first == 0 ? kNoPosition : first,
              absl::StrCat("the idempotency record of seq ", first,
                           " names no signed head that covers it")};
    }
    if (!SeekReader::At(reader.expiry(), schema::IdemExpiryKey(c.commit_time_unix_nanos(), key))
             .has_value()) {
      return {first == 0 ? kNoPosition : first,
              absl::StrCat("the idempotency record of seq ", first,
                           " has no expiry entry: it would never expire")};
    }
    return {};
  }

  // cursors: name -> BE64(position).
  void Cursors() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, cfs_[schema::kCursors]));
    uint64_t n = 0;
    for (it->SeekToFirst(); it->Valid() && !IsCancelled(cancel_); it->Next()) {
      ++n;
      if (it->value().size() != 8 || !ValidateStreamName(AsView(it->key()), "cursor").ok()) {
        Keep({kNoPosition, absl::StrCat("cursor ", n, " (in name order) is malformed")});
      }
    }
    IteratorStatus(it.get(), "the cursors");
  }

  rocksdb::DB* db_;
  const std::vector<rocksdb::ColumnFamilyHandle*>& cfs_;
  const rocksdb::ReadOptions& ro_;
  const uint64_t events_;
  const std::atomic<bool>* cancel_;
  Finding first_;
  Finding suspect_;
  bool unreadable_ = false;
};

}  // namespace

void EntryDigest::Add(int cf, absl::string_view key, absl::string_view value) {
  const char tag = static_cast<char>(cf);
  const std::string key_length = BE64(key.size());
  const Hash h = Sha256Parts({absl::string_view(&tag, 1), key_length, key, value});
  for (size_t lane = 0; lane < sum_.size(); ++lane) {
    uint64_t v = 0;
    for (size_t b = 0; b < 8; ++b) v = (v << 8) | h[lane * 8 + b];
    sum_[lane] += v;
  }
}

void AddExpectedEntries(const v1::EventHeader& header, ExpectedIndexes* expected) {
  const uint64_t seq = header.seq();
  ++expected->stream_entries;
  expected->digest.Add(schema::kStreams,
                       schema::PrefixedKey(header.stream(), header.stream_version()), BE64(seq));
  const auto& agencies = header.agencies();
  for (int i = 0; i < agencies.size(); ++i) {
    // Each distinct agency once (appends refuse repeats; a header is checked
    // as it is).
    if (std::find(agencies.begin(), agencies.begin() + i, agencies[i]) != agencies.begin() + i)
      continue;
    ++expected->agency_entries;
    expected->digest.Add(schema::kAgencyIndex, schema::PrefixedKey(agencies[i], seq), "");
  }
  if (!header.subject().empty()) {
    ++expected->subject_entries;
    expected->digest.Add(schema::kSubjectIndex, schema::PrefixedKey(header.subject(), seq), "");
  }
}

IndexTally TallyIndexes(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                        const rocksdb::ReadOptions& ro, const std::atomic<bool>* cancel) {
  IndexTally tally;
  uint64_t* counts[] = {&tally.stream_entries, &tally.agency_entries, &tally.subject_entries};
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cfs[kNamedCfs[i]]));
    for (it->SeekToFirst(); it->Valid() && !IsCancelled(cancel); it->Next()) {
      tally.digest.Add(kNamedCfs[i], AsView(it->key()), AsView(it->value()));
      ++*counts[i];
    }
    tally.readable = tally.readable && it->status().ok();
  }
  return tally;
}

Finding CheckIndexes(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                     const rocksdb::ReadOptions& ro, uint64_t events,
                     const ExpectedIndexes& expected, const IndexTally& stored,
                     const std::atomic<bool>* cancel) {
  return IndexChecker(db, cfs, ro, events, cancel).Run(expected, stored);
}

}  // namespace careloop::storage
