// The verifier's pass over the column families that index the events:
// streams, agency and subject indexes, idempotency records and their expiry
// entries, cursors. Internal to storage/verify.cc.
#pragma once

#include <rocksdb/db.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "careloop/v1/ledger.pb.h"

namespace careloop::storage {

// A problem found by a pass: the first position it concerns (a seq, or a
// tree size for heads) and what. Damage with no position (a malformed cursor)
// has kNoPosition and ranks after every positioned finding.
inline constexpr uint64_t kNoPosition = ~uint64_t{0};
struct Finding {
  uint64_t seq = 0;
  std::string problem;
  bool found() const { return !problem.empty(); }
  // Whether this finding should be reported before `other`.
  bool Before(const Finding& other) const { return found() && (!other.found() || seq < other.seq); }
};

// Whether a pass should stop early (a closing ledger abandons its scrub).
inline bool IsCancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

// An order-independent digest of a set of index entries: the lane-wise sum
// of SHA-256(column family, key, value) over the entries. Two sets with the
// same digest and count are the same set, short of a deliberate collision.
class EntryDigest {
 public:
  void Add(int cf, absl::string_view key, absl::string_view value);
  bool operator==(const EntryDigest& other) const = default;

 private:
  std::array<uint64_t, 4> sum_{};
};

// What the events say their indexes hold (counted by the payload pass).
struct ExpectedIndexes {
  uint64_t stream_entries = 0;   // one per event
  uint64_t agency_entries = 0;   // one per distinct agency an event names
  uint64_t subject_entries = 0;  // one per event with a subject
  EntryDigest digest;            // of all of those entries
};

// Adds what one event names in the stream, agency and subject indexes.
void AddExpectedEntries(const v1::EventHeader& header, ExpectedIndexes* expected);

// What the stream, agency and subject indexes hold, read once in order:
// their entry counts and digest. Needs nothing from the events, so it can
// run beside the payload pass.
struct IndexTally {
  uint64_t stream_entries = 0;
  uint64_t agency_entries = 0;
  uint64_t subject_entries = 0;
  EntryDigest digest;
  bool readable = true;  // every iterator ended without an error
};
IndexTally TallyIndexes(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                        const rocksdb::ReadOptions& ro, const std::atomic<bool>* cancel = nullptr);

// The stream, agency and subject indexes, as `stored` tallies them: equal to
// what the events name, they are whole. Otherwise every
// entry must point at an event that names it; with the counts equal, every
// event then has its entries; the first event without them is named. Idempotency records must cover
// events that exist, with their versions and commit time, and a signed head
// that covers them; each needs its expiry entry. Cursors hold one position.
// `events` is the number of events the ledger holds (seqs 1..events). Once
// `cancel` is set the pass stops early and its finding means nothing.
Finding CheckIndexes(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                     const rocksdb::ReadOptions& ro, uint64_t events,
                     const ExpectedIndexes& expected, const IndexTally& stored,
                     const std::atomic<bool>* cancel = nullptr);

}  // namespace careloop::storage
