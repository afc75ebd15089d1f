// The durable high-water mark: the size and root of the newest head the
// ledger has answered for, under its log id, in a small file of its own
// (schema::kHighWaterFile) beside the database. It is written and synced
// after the WAL sync that makes a group durable and before any answer of
// that group goes out, so at start a ledger that holds fewer events, or
// another root at that size, is known to have lost acknowledged history
// (a damaged or truncated WAL, a copied backup, a lost file) and is refused
// instead of served short or forked. It is not a RocksDB file: nothing that
// goes wrong with the WAL or the MANIFEST takes it along. Only a restore,
// which starts a new log id, starts it again.
//
// Two slots, each a fixed record with a SHA-256 check and a counter, are
// written in turn, so a write torn by a power cut leaves the other slot
// whole. A slot is only ever behind the newest answer if its write failed,
// and a failed write stops the ledger's writer before that answer.
#pragma once

#include <rocksdb/file_system.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "base/sha256.h"

namespace careloop::storage {

struct HighWater {
  std::string log_id;  // 32 hex digits
  uint64_t size = 0;
  Hash root{};  // RFC 6962 root at `size`
};

class HighWaterFile {
 public:
  // The mark of `dir`, if its file exists. DATA_LOSS if it exists and no
  // slot is whole.
  static absl::StatusOr<std::optional<HighWater>> Read(rocksdb::FileSystem* fs,
                                                       const std::string& dir);
  // Creates (or replaces) the file with `mark` in both slots, synced, and
  // syncs the directory.
  static absl::StatusOr<std::unique_ptr<HighWaterFile>> Create(rocksdb::FileSystem* fs,
                                                               const std::string& dir,
                                                               const HighWater& mark);
  // Opens the existing file for writing (after Read found it whole).
  static absl::StatusOr<std::unique_ptr<HighWaterFile>> OpenExisting(rocksdb::FileSystem* fs,
                                                                     const std::string& dir);

  // Writes `mark` into the older slot and syncs it. An error means the mark
  // may not be durable: the caller answers nothing it covers.
  absl::Status Write(const HighWater& mark);
  uint64_t writes() const { return writes_; }

 private:
  HighWaterFile(std::unique_ptr<rocksdb::FSRandomRWFile> file, uint64_t counter)
      : file_(std::move(file)), counter_(counter) {}
  std::unique_ptr<rocksdb::FSRandomRWFile> file_;
  uint64_t counter_;  // of the newest slot written
  uint64_t writes_ = 0;
};

}  // namespace careloop::storage
