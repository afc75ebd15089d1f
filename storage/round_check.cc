#include "storage/round_check.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace careloop::storage {
namespace {

absl::Status Broken(absl::string_view what) {
  return absl::InternalError(absl::StrCat("a commit round broke an invariant: ", what));
}

// The old tree's border and the round's new nodes: every node a consistency
// proof from the old size to the new one needs is one of them.
class RoundNodes final : public merkle::NodeReader {
 public:
  RoundNodes(const merkle::CompactRange& before,
             const std::vector<std::pair<merkle::NodeId, Hash>>& created) {
    for (const auto& [id, hash] : before.nodes()) nodes_[{id.level, id.index}] = hash;
    for (const auto& [id, hash] : created) nodes_[{id.level, id.index}] = hash;
  }
  absl::StatusOr<std::vector<Hash>> ReadNodes(const std::vector<merkle::NodeId>& ids) override {
    std::vector<Hash> out;
    out.reserve(ids.size());
    for (const merkle::NodeId& id : ids) {
      auto it = nodes_.find(std::make_pair(id.level, id.index));
      if (it == nodes_.end()) {
        return Broken(absl::StrCat("node (", id.level, ", ", id.index,
                                   ") is neither on the old border nor written by the round"));
      }
      out.push_back(it->second);
    }
    return out;
  }

 private:
  absl::flat_hash_map<std::pair<uint8_t, uint64_t>, Hash> nodes_;
};

absl::Status CheckSeqs(const RoundFacts& f) {
  uint64_t next = f.before->size() + 1;
  for (const v1::Commit* c : f.commits) {
    if (c->stream_versions_size() == 0) {
      if (c->first_seq() != 0 || c->last_seq() != 0)
        return Broken("a commit without events has seqs");
      continue;
    }
    if (c->first_seq() != next) {
      return Broken(absl::StrCat("a commit starts at seq ", c->first_seq(), ", not ", next));
    }
    if (c->last_seq() < c->first_seq() ||
        c->last_seq() - c->first_seq() + 1 != static_cast<uint64_t>(c->stream_versions_size())) {
      return Broken(absl::StrCat("the commit at seq ", c->first_seq(),
                                 " has another number of seqs than stream versions"));
    }
    next = c->last_seq() + 1;
  }
  if (next != f.after->size() + 1) {
    return Broken(absl::StrCat("the commits end at seq ", next - 1, " but the tree has ",
                               f.after->size(), " leaves"));
  }
  return absl::OkStatus();
}

absl::Status CheckVersions(const RoundFacts& f) {
  for (const auto& [stream, run] : f.streams) {
    for (size_t k = 0; k < run.versions.size(); ++k) {
      if (run.versions[k] != run.base + k + 1) {
        // The stream name is an id the writer chose, not a person's data.
        return Broken(absl::StrCat("stream ", stream, " got version ", run.versions[k], " where ",
                                   run.base + k + 1, " comes next"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLeaves(const RoundFacts& f) {
  uint64_t next = f.before->size();
  for (const auto& [id, hash] : *f.nodes) {
    if (id.level != 0) continue;
    if (id.index != next) {
      return Broken(
          absl::StrCat("the round writes leaf ", id.index, " where ", next, " comes next"));
    }
    ++next;
  }
  if (next != f.after->size()) {
    return Broken(
        absl::StrCat("the round writes leaves up to ", next, " for a tree of ", f.after->size()));
  }
  return absl::OkStatus();
}

// Every node the round writes above a leaf is the hash of its two children,
// so that the leaves it stores are the ones its subtrees (and proofs) cover.
absl::Status CheckParents(const RoundFacts& f, RoundNodes& reader) {
  for (const auto& [id, hash] : *f.nodes) {
    if (id.level == 0) continue;
    const uint8_t child = id.level - 1;
    ASSIGN_OR_RETURN(std::vector<Hash> kids,
                     reader.ReadNodes({{child, id.index * 2}, {child, id.index * 2 + 1}}));
    if (merkle::HashChildren(kids[0], kids[1]) != hash) {
      return Broken(
          absl::StrCat("node (", id.level, ", ", id.index, ") is not the hash of its children"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckExtends(const RoundFacts& f) {
  const uint64_t size1 = f.before->size();
  const uint64_t size2 = f.after->size();
  if (size2 == size1) {
    if (f.after->Root() != f.before->Root()) return Broken("the root changed without new leaves");
    return absl::OkStatus();
  }
  RoundNodes reader(*f.before, *f.nodes);
  RETURN_IF_ERROR(CheckParents(f, reader));
  if (size1 == 0) {
    ASSIGN_OR_RETURN(std::vector<Hash> root, merkle::HashRanges(reader, {{0, size2}}));
    if (root[0] != f.after->Root()) return Broken("the written nodes do not lead to the new root");
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<Hash> hashes,
                   merkle::HashRanges(reader, merkle::ConsistencyRanges(size1, size2)));
  std::vector<std::string> proof;
  proof.reserve(hashes.size());
  for (const Hash& h : hashes) proof.push_back(ToBytes(h));
  absl::Status s = merkle::VerifyConsistency(size1, size2, proof, AsStringView(f.before->Root()),
                                             AsStringView(f.after->Root()));
  if (!s.ok()) {
    return Broken(absl::StrCat("the new tree does not extend the old one (", s.message(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRound(const RoundFacts& f) {
  CARELOOP_CHECK(f.before != nullptr && f.after != nullptr && f.nodes != nullptr);
  if (f.after->size() < f.before->size()) return Broken("the tree shrank");
  RETURN_IF_ERROR(CheckSeqs(f));
  RETURN_IF_ERROR(CheckVersions(f));
  RETURN_IF_ERROR(CheckLeaves(f));
  return CheckExtends(f);
}

absl::Status CheckHeadCovers(const v1::SignedHead& head, const merkle::CompactRange& after) {
  if (head.tree_size() != after.size()) {
    return Broken(
        absl::StrCat("the head signs size ", head.tree_size(), " for a tree of ", after.size()));
  }
  if (head.root_hash() != AsStringView(after.Root())) {
    return Broken("the head signs another root than the tree's");
  }
  return absl::OkStatus();
}

}  // namespace careloop::storage
