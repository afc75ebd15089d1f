#include "storage/merkle.h"

#include <bit>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace careloop::storage::merkle {
namespace {

// The largest power of two strictly below n (n >= 2).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

void InclusionRangesRec(uint64_t m, uint64_t begin, uint64_t end, std::vector<Range>* out) {
  if (end - begin <= 1) return;
  uint64_t k = SplitPoint(end - begin);
  if (m < begin + k) {
    InclusionRangesRec(m, begin, begin + k, out);
    out->push_back({begin + k, end});
  } else {
    InclusionRangesRec(m, begin + k, end, out);
    out->push_back({begin, begin + k});
  }
}

void SubproofRec(uint64_t m_end, uint64_t begin, uint64_t end, bool whole,
                 std::vector<Range>* out) {
  uint64_t n = end - begin;
  uint64_t m = m_end - begin;
  if (m == n) {
    if (!whole) out->push_back({begin, end});
    return;
  }
  uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubproofRec(m_end, begin, begin + k, whole, out);
    out->push_back({begin + k, end});
  } else {
    SubproofRec(m_end, begin + k, end, false, out);
    out->push_back({begin, begin + k});
  }
}

absl::StatusOr<Hash> ToHash(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 32 bytes, got ", bytes.size()));
  }
  Hash h;
  std::copy(bytes.begin(), bytes.end(), h.begin());
  return h;
}

}  // namespace

Hash HashLeaf(absl::string_view leaf_data) {
  static constexpr char kPrefix = 0x00;
  return Sha256Parts({absl::string_view(&kPrefix, 1), leaf_data});
}

Hash HashChildren(const Hash& left, const Hash& right) {
  static constexpr char kPrefix = 0x01;
  return Sha256Parts({absl::string_view(&kPrefix, 1), AsStringView(left), AsStringView(right)});
}

Hash EmptyRoot() { return Sha256(""); }

std::vector<NodeId> Decompose(Range r) {
  std::vector<NodeId> out;
  uint64_t pos = r.begin;
  uint64_t remaining = r.end - r.begin;
  while (remaining > 0) {
    uint64_t part = std::bit_floor(remaining);
    uint8_t level = static_cast<uint8_t>(std::countr_zero(part));
    CARELOOP_CHECK(pos % part == 0);  // aligned, as every proof range is
    out.push_back({level, pos >> level});
    pos += part;
    remaining -= part;
  }
  return out;
}

std::vector<Range> InclusionRanges(uint64_t index, uint64_t size) {
  std::vector<Range> out;
  CARELOOP_CHECK(index < size);
  InclusionRangesRec(index, 0, size, &out);
  return out;
}

std::vector<Range> ConsistencyRanges(uint64_t size1, uint64_t size2) {
  std::vector<Range> out;
  CARELOOP_CHECK(0 < size1 && size1 < size2);
  SubproofRec(size1, 0, size2, true, &out);
  return out;
}

absl::StatusOr<std::vector<Hash>> HashRanges(NodeReader& reader, const std::vector<Range>& ranges) {
  std::vector<NodeId> ids;
  std::vector<size_t> counts;
  for (const Range& r : ranges) {
    std::vector<NodeId> parts = Decompose(r);
    counts.push_back(parts.size());
    ids.insert(ids.end(), parts.begin(), parts.end());
  }
  ASSIGN_OR_RETURN(std::vector<Hash> nodes, reader.ReadNodes(ids));
  CARELOOP_CHECK(nodes.size() == ids.size());
  std::vector<Hash> out;
  size_t pos = 0;
  for (size_t c : counts) {
    // Fold right to left: MTH = H(p0, H(p1, ... H(pn-2, pn-1))).
    Hash h = nodes[pos + c - 1];
    for (size_t i = c - 1; i-- > 0;) h = HashChildren(nodes[pos + i], h);
    out.push_back(h);
    pos += c;
  }
  return out;
}

absl::StatusOr<CompactRange> CompactRange::Load(NodeReader& reader, uint64_t size) {
  CompactRange cr;
  if (size == 0) return cr;
  std::vector<NodeId> ids = Decompose({0, size});
  ASSIGN_OR_RETURN(std::vector<Hash> hashes, reader.ReadNodes(ids));
  for (size_t i = 0; i < ids.size(); ++i) cr.nodes_.push_back({ids[i], hashes[i]});
  cr.size_ = size;
  return cr;
}

void CompactRange::Append(const Hash& leaf_hash, std::vector<std::pair<NodeId, Hash>>* created) {
  NodeId id{0, size_};
  Hash h = leaf_hash;
  if (created) created->push_back({id, h});
  // Merge equal-level neighbours: each merge completes one perfect subtree.
  while (!nodes_.empty() && nodes_.back().first.level == id.level) {
    h = HashChildren(nodes_.back().second, h);
    id = NodeId{static_cast<uint8_t>(id.level + 1), id.index >> 1};
    nodes_.pop_back();
    if (created) created->push_back({id, h});
  }
  nodes_.push_back({id, h});
  ++size_;
}

Hash CompactRange::Root() const {
  if (nodes_.empty()) return EmptyRoot();
  Hash h = nodes_.back().second;
  for (size_t i = nodes_.size() - 1; i-- > 0;) h = HashChildren(nodes_[i].second, h);
  return h;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                             const std::vector<std::string>& proof, absl::string_view root) {
  ASSIGN_OR_RETURN(Hash want_root, ToHash(root, "root"));
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf index ", index, " is outside a tree of size ", size));
  }
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Hash r = leaf_hash;
  for (const std::string& p_bytes : proof) {
    ASSIGN_OR_RETURN(Hash p, ToHash(p_bytes, "proof element"));
    if (sn == 0) return absl::InvalidArgumentError("inclusion proof is too long");
    if ((fn & 1) == 1 || fn == sn) {
      r = HashChildren(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = HashChildren(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("inclusion proof is too short");
  if (r != want_root) {
    return absl::InvalidArgumentError("inclusion proof does not lead to the root");
  }
  return absl::OkStatus();
}

namespace {
// Shared by VerifyConsistency and RootFromConsistency: computes (root1, root2)
// from the proof per RFC 9162 §2.1.4.2 steps 2-7.
absl::Status ConsistencyRoots(uint64_t size1, uint64_t size2, const std::vector<std::string>& proof,
                              const Hash& root1, Hash* fr_out, Hash* sr_out) {
  if (size1 == 0) {
    return absl::InvalidArgumentError("a consistency proof from the empty tree proves nothing");
  }
  if (size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("size1 ", size1, " is larger than size2 ", size2));
  }
  std::vector<Hash> path;
  for (const std::string& p : proof) {
    ASSIGN_OR_RETURN(Hash h, ToHash(p, "proof element"));
    path.push_back(h);
  }
  if (size1 == size2) {
    if (!path.empty()) {
      return absl::InvalidArgumentError("a proof between equal sizes must be empty");
    }
    *fr_out = root1;
    *sr_out = root1;
    return absl::OkStatus();
  }
  if (path.empty()) return absl::InvalidArgumentError("consistency proof is empty");
  if (std::has_single_bit(size1)) path.insert(path.begin(), root1);
  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0];
  Hash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return absl::InvalidArgumentError("consistency proof is too long");
    if ((fn & 1) == 1 || fn == sn) {
      fr = HashChildren(c, fr);
      sr = HashChildren(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = HashChildren(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("consistency proof is too short");
  *fr_out = fr;
  *sr_out = sr;
  return absl::OkStatus();
}
}  // namespace

absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               const std::vector<std::string>& proof, absl::string_view root1,
                               absl::string_view root2) {
  ASSIGN_OR_RETURN(Hash r1, ToHash(root1, "root1"));
  ASSIGN_OR_RETURN(Hash r2, ToHash(root2, "root2"));
  Hash fr, sr;
  RETURN_IF_ERROR(ConsistencyRoots(size1, size2, proof, r1, &fr, &sr));
  if (fr != r1) return absl::InvalidArgumentError("consistency proof does not lead to root1");
  if (sr != r2) return absl::InvalidArgumentError("consistency proof does not lead to root2");
  return absl::OkStatus();
}

absl::StatusOr<Hash> RootFromConsistency(uint64_t size1, uint64_t size2,
                                         const std::vector<std::string>& proof,
                                         absl::string_view root1) {
  ASSIGN_OR_RETURN(Hash r1, ToHash(root1, "root1"));
  Hash fr, sr;
  RETURN_IF_ERROR(ConsistencyRoots(size1, size2, proof, r1, &fr, &sr));
  if (fr != r1) return absl::InvalidArgumentError("consistency proof does not lead to root1");
  return sr;
}

void MemoryTree::AppendLeafHash(const Hash& h) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(h);
  for (size_t level = 0;; ++level) {
    if (levels_[level].size() % 2 != 0) break;
    if (levels_.size() == level + 1) levels_.emplace_back();  // may reallocate levels_
    const auto& cur = levels_[level];
    levels_[level + 1].push_back(HashChildren(cur[cur.size() - 2], cur[cur.size() - 1]));
  }
}

Hash MemoryTree::RootAt(uint64_t size) const {
  if (size == 0) return EmptyRoot();
  std::vector<NodeId> ids = Decompose({0, size});
  Hash h = levels_[ids.back().level][ids.back().index];
  for (size_t i = ids.size() - 1; i-- > 0;) {
    h = HashChildren(levels_[ids[i].level][ids[i].index], h);
  }
  return h;
}

Hash MemoryTree::Root() const { return RootAt(size()); }

absl::StatusOr<std::vector<Hash>> MemoryTree::ReadNodes(const std::vector<NodeId>& ids) {
  std::vector<Hash> out;
  out.reserve(ids.size());
  for (const NodeId& id : ids) {
    if (id.level >= levels_.size() || id.index >= levels_[id.level].size()) {
      return absl::NotFoundError(absl::StrCat("no node at level ", id.level, " index ", id.index));
    }
    out.push_back(levels_[id.level][id.index]);
  }
  return out;
}

}  // namespace careloop::storage::merkle
