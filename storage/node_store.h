// The Merkle tree's stored nodes, for proofs: every perfect-subtree hash
// (leaves included) is in the merkle column family (schema.h); a bounded
// cache holds the ones proofs ask for most.
#pragma once

#include <rocksdb/db.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/sha256.h"
#include "storage/merkle.h"

namespace careloop::storage {

// Perfect-subtree hashes never change once written: a bounded in-memory
// cache in front of the tree's column family, two generations of `capacity`
// nodes each (the newest nodes, and the old ones proofs keep asking for).
class NodeCache {
 public:
  explicit NodeCache(size_t capacity) : capacity_(capacity) {}
  void Add(const std::vector<std::pair<merkle::NodeId, Hash>>& nodes);
  // The cached hash of each id, or nullopt.
  std::vector<std::optional<Hash>> Find(const std::vector<merkle::NodeId>& ids) const;

 private:
  static uint64_t Key(const merkle::NodeId& id) { return (id.index << 6) | id.level; }
  void AddLocked(uint64_t key, const Hash& hash) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Hash> current_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Hash> previous_ ABSL_GUARDED_BY(mu_);
};

// Perfect-subtree hashes for proofs: what the cache (if any) holds, the
// rest in one MultiGet (then cached, unless `fill` is false: reads check
// leaves, which would crowd the proofs' nodes out). DATA_LOSS for a node
// that is missing or not 32 bytes: callers ask only for nodes of the tree.
class RocksNodeReader final : public merkle::NodeReader {
 public:
  RocksNodeReader(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, NodeCache* cache = nullptr,
                  bool fill = true)
      : db_(db), cf_(cf), cache_(cache), fill_(fill) {}
  absl::StatusOr<std::vector<Hash>> ReadNodes(const std::vector<merkle::NodeId>& ids) override;

 private:
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  NodeCache* cache_;
  bool fill_;
};

}  // namespace careloop::storage
