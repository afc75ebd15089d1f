// The commit round's invariants (storage/round_check.h): a correct round
// passes, and each way a round can skip, repeat or fork the log is refused.
// These are the negative controls for the checks the writer runs before it
// writes a round.
#include "storage/round_check.h"

#include <gtest/gtest.h>

#include <random>

#include "absl/strings/str_cat.h"

namespace careloop::storage {
namespace {

using merkle::CompactRange;

Hash LeafOf(uint64_t seed, uint64_t i) { return merkle::HashLeaf(absl::StrCat(seed, ":", i)); }

// A round of `commits` appends of 1..4 events each on a tree of `old_size`
// leaves, built the way the writer builds one.
struct BuiltRound {
  CompactRange before;
  CompactRange after;
  std::vector<std::pair<merkle::NodeId, Hash>> nodes;
  std::vector<v1::Commit> commits;
  absl::flat_hash_map<std::string, StreamRun> streams;

  RoundFacts Facts() const {
    RoundFacts f{&before, &after, &nodes, {}, streams};
    for (const v1::Commit& c : commits) f.commits.push_back(&c);
    return f;
  }
};

BuiltRound Build(uint64_t seed, uint64_t old_size, int commits) {
  std::mt19937_64 rng(seed);
  BuiltRound b;
  for (uint64_t i = 0; i < old_size; ++i) b.before.Append(LeafOf(seed, i), nullptr);
  b.after = b.before;
  for (int c = 0; c < commits; ++c) {
    v1::Commit commit;
    const int events = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < events; ++e) {
      const std::string stream = absl::StrCat("s", rng() % 3);
      auto [it, fresh] = b.streams.try_emplace(stream, StreamRun{rng() % 5, {}});
      StreamRun& run = it->second;
      run.versions.push_back(run.base + run.versions.size() + 1);
      const uint64_t seq = b.after.size() + 1;
      b.after.Append(LeafOf(seed, seq - 1), &b.nodes);
      if (e == 0) commit.set_first_seq(seq);
      commit.set_last_seq(seq);
      commit.add_stream_versions(run.versions.back());
    }
    b.commits.push_back(commit);
  }
  return b;
}

uint64_t Seed() {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

void ExpectBroken(const BuiltRound& b, absl::string_view what) {
  absl::Status s = CheckRound(b.Facts());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << what << ": " << s;
}

TEST(RoundCheckTest, CorrectRoundsPass) {
  const uint64_t seed = Seed();
  for (uint64_t old_size : {0, 1, 2, 3, 7, 8, 63, 64, 100, 1023}) {
    for (int commits : {0, 1, 2, 5, 17}) {
      BuiltRound b = Build(seed + old_size * 31 + commits, old_size, commits);
      EXPECT_TRUE(CheckRound(b.Facts()).ok())
          << old_size << "+" << commits << ": " << CheckRound(b.Facts());
    }
  }
}

TEST(RoundCheckTest, CursorOnlyCommitsHaveNoSeqs) {
  BuiltRound b = Build(Seed(), 5, 2);
  b.commits.insert(b.commits.begin() + 1, v1::Commit());
  EXPECT_TRUE(CheckRound(b.Facts()).ok());
  b.commits[1].set_first_seq(b.commits[0].last_seq());
  ExpectBroken(b, "a commit without events that claims a seq");
}

TEST(RoundCheckTest, SeqGapsAndRepeatsAreRefused) {
  const uint64_t seed = Seed();
  {
    BuiltRound b = Build(seed, 10, 3);
    b.commits[1].set_first_seq(b.commits[1].first_seq() + 1);
    ExpectBroken(b, "gap");
  }
  {
    BuiltRound b = Build(seed, 10, 3);
    b.commits[0].set_first_seq(10);  // repeats the old tree's last seq
    ExpectBroken(b, "repeat of an old seq");
  }
  {
    BuiltRound b = Build(seed, 10, 3);
    b.commits[2].add_stream_versions(99);
    ExpectBroken(b, "more versions than seqs");
  }
  {
    BuiltRound b = Build(seed, 10, 3);
    b.commits.pop_back();
    ExpectBroken(b, "commits end before the tree");
  }
}

TEST(RoundCheckTest, StreamVersionsMustBeContiguous) {
  const uint64_t seed = Seed();
  for (int tamper = 0; tamper < 3; ++tamper) {
    BuiltRound b = Build(seed, 4, 8);
    StreamRun& run = b.streams.begin()->second;
    ASSERT_FALSE(run.versions.empty());
    if (tamper == 0) run.versions.back() += 1;                     // skips one
    if (tamper == 1) run.versions.push_back(run.versions.back());  // repeats one
    if (tamper == 2) run.base = run.base == 0 ? 1 : run.base - 1;  // another base
    ExpectBroken(b, absl::StrCat("versions tamper ", tamper));
  }
}

TEST(RoundCheckTest, LeavesMustCoverEveryNewSeqInOrder) {
  const uint64_t seed = Seed();
  {
    BuiltRound b = Build(seed, 6, 4);
    b.nodes.erase(b.nodes.begin());  // the first new leaf
    ExpectBroken(b, "missing leaf");
  }
  {
    BuiltRound b = Build(seed, 6, 4);
    for (auto& [id, hash] : b.nodes) {
      if (id.level == 0 && id.index == 7) id.index = 8;
    }
    ExpectBroken(b, "leaf out of order");
  }
}

TEST(RoundCheckTest, EveryAlteredNodeIsFound) {
  const uint64_t seed = Seed();
  const BuiltRound good = Build(seed, 37, 9);
  ASSERT_GT(good.nodes.size(), 20u);
  for (size_t i = 0; i < good.nodes.size(); ++i) {
    BuiltRound b = good;
    b.nodes[i].second[i % 32] ^= 0x01;
    ExpectBroken(b, absl::StrCat("node ", i, " altered"));
  }
}

TEST(RoundCheckTest, ATreeThatDoesNotExtendTheOldOneIsRefused) {
  const uint64_t seed = Seed();
  for (uint64_t old_size : {1, 5, 8, 100}) {
    BuiltRound good = Build(seed, old_size, 3);
    // The same round applied to another history of the same size: a fork.
    BuiltRound fork = Build(seed + 1, old_size, 3);
    BuiltRound b = good;
    b.after = fork.after;
    b.nodes = fork.nodes;
    ExpectBroken(b, absl::StrCat("fork at ", old_size));
    // And a tree that lost its newest leaf.
    BuiltRound shrunk = good;
    shrunk.after = shrunk.before;
    shrunk.before = good.after;
    ExpectBroken(shrunk, "shrink");
  }
}

TEST(RoundCheckTest, TheHeadMustSignTheTree) {
  BuiltRound b = Build(Seed(), 12, 2);
  v1::SignedHead head;
  head.set_tree_size(b.after.size());
  head.set_root_hash(ToBytes(b.after.Root()));
  EXPECT_TRUE(CheckHeadCovers(head, b.after).ok());
  v1::SignedHead other_size = head;
  other_size.set_tree_size(head.tree_size() - 1);
  EXPECT_EQ(CheckHeadCovers(other_size, b.after).code(), absl::StatusCode::kInternal);
  v1::SignedHead other_root = head;
  other_root.set_root_hash(ToBytes(b.before.Root()));
  EXPECT_EQ(CheckHeadCovers(other_root, b.after).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace careloop::storage
