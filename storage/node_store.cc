// The Merkle tree's stored nodes for proofs: a bounded cache of perfect-
// subtree hashes in front of the merkle column family, and the reader that
// serves proofs from both.
#include "storage/node_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {

void NodeCache::AddLocked(uint64_t key, const Hash& hash) {
  if (current_.size() >= capacity_) {
    previous_ = std::move(current_);
    current_ = {};
  }
  current_.insert_or_assign(key, hash);
}

void NodeCache::Add(const std::vector<std::pair<merkle::NodeId, Hash>>& nodes) {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, hash] : nodes) AddLocked(Key(id), hash);
}

std::vector<std::optional<Hash>> NodeCache::Find(const std::vector<merkle::NodeId>& ids) const {
  std::vector<std::optional<Hash>> out(ids.size());
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint64_t k = Key(ids[i]);
    if (auto it = current_.find(k); it != current_.end()) {
      out[i] = it->second;
    } else if (auto old = previous_.find(k); old != previous_.end()) {
      out[i] = old->second;
    }
  }
  return out;
}

absl::StatusOr<std::vector<Hash>> RocksNodeReader::ReadNodes(
    const std::vector<merkle::NodeId>& ids) {
  std::vector<Hash> out(ids.size());
  std::vector<size_t> missing;
  if (cache_ != nullptr) {
    std::vector<std::optional<Hash>> cached = cache_->Find(ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (cached[i].has_value()) {
        out[i] = *cached[i];
      } else {
        missing.push_back(i);
      }
    }
    if (missing.empty()) return out;
  } else {
    for (size_t i = 0; i < ids.size(); ++i) missing.push_back(i);
  }
  std::vector<std::string> keys;
  keys.reserve(missing.size());
  for (size_t i : missing) keys.push_back(schema::MerkleKey(ids[i]));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf_);
  std::vector<std::string> values;
  std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &values);
  std::vector<std::pair<merkle::NodeId, Hash>> read;
  for (size_t j = 0; j < missing.size(); ++j) {
    const merkle::NodeId& id = ids[missing[j]];
    if (st[j].IsNotFound()) {
      return absl::DataLossError(
          absl::StrCat("tree node level ", id.level, " index ", id.index, " is missing"));
    }
    if (!st[j].ok()) {
      return FromRocks(st[j], absl::StrCat("tree node level ", id.level, " index ", id.index));
    }
    if (values[j].size() != 32) {
      return absl::DataLossError(
          absl::StrCat("tree node level ", id.level, " index ", id.index, " is not 32 bytes"));
    }
    Hash& h = out[missing[j]];
    std::copy(values[j].begin(), values[j].end(), h.begin());
    read.emplace_back(id, h);
  }
  if (cache_ != nullptr && fill_) cache_->Add(read);
  return out;
}

}  // namespace careloop::storage
