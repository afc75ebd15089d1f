// A projection whose state is kept in a RocksDB directory of its own.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <string>
#include <vector>

#include "storage/projection.h"

namespace careloop::storage {

// A projection kept in a RocksDB directory of its own. Subclasses add their
// state changes for each event to the batch; the applied seq goes in the same
// batch. Writes are not synced: the projection can always be rebuilt from the
// ledger, and an atomic batch never separates state from its seq.
class RocksDbProjection : public Projection {
 public:
  ~RocksDbProjection() override;
  absl::Status Open(const std::string& dir);
  absl::StatusOr<uint64_t> AppliedSeq() override;
  absl::Status Apply(const std::vector<v1::Event>& events) override;
  rocksdb::DB* db() { return db_.get(); }

 protected:
  virtual absl::Status ApplyEvent(const v1::Event& event, rocksdb::WriteBatch* batch) = 0;

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace careloop::storage
