// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
//
// The tree is stored as perfect subtrees: node (level L, index i) is the hash
// of leaves [i * 2^L, (i + 1) * 2^L). Every proof element is the hash of a
// range of leaves, and every range a proof needs splits into O(log n) stored
// perfect subtrees, so proofs cost O(log n) reads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/sha256.h"

namespace careloop::storage::merkle {

Hash HashLeaf(absl::string_view leaf_data);              // SHA-256(0x00 || data)
Hash HashChildren(const Hash& left, const Hash& right);  // SHA-256(0x01 || l || r)
Hash EmptyRoot();                                        // SHA-256("")

struct NodeId {
  uint8_t level = 0;
  uint64_t index = 0;
  bool operator==(const NodeId& o) const { return level == o.level && index == o.index; }
};

// A half-open range of leaf indices [begin, end).
struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// The perfect subtrees that make up [begin, end), left to right. Requires that
// the range is one an RFC 6962 proof asks for (begin aligned to the largest
// power of two not above end - begin), which holds for every range below.
std::vector<NodeId> Decompose(Range r);

// The ranges whose hashes form the inclusion proof of leaf `index` in a tree
// of `size` leaves (RFC 9162 §2.1.3.1), in proof order.
std::vector<Range> InclusionRanges(uint64_t index, uint64_t size);
// The ranges of the consistency proof from size1 to size2 (RFC 9162
// §2.1.4.1), for 0 < size1 < size2.
std::vector<Range> ConsistencyRanges(uint64_t size1, uint64_t size2);

// Where perfect-subtree hashes come from (RocksDB, memory).
class NodeReader {
 public:
  virtual ~NodeReader() = default;
  virtual absl::StatusOr<std::vector<Hash>> ReadNodes(const std::vector<NodeId>& ids) = 0;
};

// Hashes each range with one batched read of all the nodes they need.
absl::StatusOr<std::vector<Hash>> HashRanges(NodeReader& reader, const std::vector<Range>& ranges);

// The right border of a tree: its perfect subtrees from the largest (leftmost)
// to the smallest. Appending touches O(log n) nodes; the root folds them.
class CompactRange {
 public:
  CompactRange() = default;
  // From the stored perfect subtrees of a tree of `size` leaves.
  static absl::StatusOr<CompactRange> Load(NodeReader& reader, uint64_t size);

  uint64_t size() const { return size_; }
  // The perfect subtrees of the border, largest (leftmost) first.
  const std::vector<std::pair<NodeId, Hash>>& nodes() const { return nodes_; }
  // Appends a leaf hash; `created` receives every perfect node that this
  // append completes (the leaf itself first), for storage.
  void Append(const Hash& leaf_hash, std::vector<std::pair<NodeId, Hash>>* created);
  Hash Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<std::pair<NodeId, Hash>> nodes_;
};

// RFC 9162 §2.1.3.2. `root` and every proof element must be 32 bytes.
absl::Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                             const std::vector<std::string>& proof, absl::string_view root);

// RFC 9162 §2.1.4.2, extended by one convention: equal sizes verify with an
// empty proof and equal roots. size1 == 0 is refused (a proof from the empty
// tree proves nothing; this follows the transparency-dev vectors).
absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               const std::vector<std::string>& proof, absl::string_view root1,
                               absl::string_view root2);

// Root computed from a consistency proof and the old root (used by verifiers
// that only know root1). Same rules as VerifyConsistency.
absl::StatusOr<Hash> RootFromConsistency(uint64_t size1, uint64_t size2,
                                         const std::vector<std::string>& proof,
                                         absl::string_view root1);

// A whole tree in memory, for tests and the offline verifier's cross-checks.
class MemoryTree final : public NodeReader {
 public:
  void AppendLeaf(absl::string_view data) { AppendLeafHash(HashLeaf(data)); }
  void AppendLeafHash(const Hash& h);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  Hash Root() const;                 // of the whole tree
  Hash RootAt(uint64_t size) const;  // of the first `size` leaves
  absl::StatusOr<std::vector<Hash>> ReadNodes(const std::vector<NodeId>& ids) override;

 private:
  std::vector<std::vector<Hash>> levels_;
};

}  // namespace careloop::storage::merkle
