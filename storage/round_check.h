// The invariants of one commit round, checked by the writer before anything
// of the round is written (in every build type). They restate what the
// round claims independently of how it was built: a bug in the writer, a
// stale in-memory tree or a flipped bit in memory must stop the writer, not
// sign and store a log that skips, repeats or forks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "careloop/v1/ledger.pb.h"
#include "storage/merkle.h"

namespace careloop::storage {

// The versions a round gave one stream's events, in seq order, after `base`
// (the stream's version before the round).
struct StreamRun {
  uint64_t base = 0;
  std::vector<uint64_t> versions;
};

struct RoundFacts {
  const merkle::CompactRange* before = nullptr;  // the tree the round started from
  const merkle::CompactRange* after = nullptr;   // the tree it ends with
  // Every node the round completed (each leaf first), as it will store them.
  const std::vector<std::pair<merkle::NodeId, Hash>>* nodes = nullptr;
  std::vector<const v1::Commit*> commits;  // the round's new commits, in order
  absl::flat_hash_map<std::string, StreamRun> streams;
};

// OK, or INTERNAL naming the first broken invariant:
//  - the commits' seqs follow the old size without a gap or a repeat and end
//    at the new size, each with one stream version per event;
//  - every stream's versions continue its old version by one at a time;
//  - the round stores one leaf per new seq, in order, and every node above
//    a leaf it stores is the hash of its two children;
//  - the nodes it stores, with the old tree's border, prove the new root
//    consistent with the old one (RFC 9162): the new tree extends the old.
absl::Status CheckRound(const RoundFacts& facts);

// OK when `head` signs exactly the tree `after`.
absl::Status CheckHeadCovers(const v1::SignedHead& head, const merkle::CompactRange& after);

}  // namespace careloop::storage
