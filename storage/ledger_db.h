// The ledger's RocksDB database as a directory on disk: its options and
// column families (schema.h's layout), the format file, and small files
// written durably. Shared by the ledger, its offline verifier, backup and
// restore, and tools that measure the layout.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/file_system.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace careloop::storage {

// The options every opener uses: WAL recovery that refuses damage short of
// a torn tail, and RocksDB's own log forwarded to careloop's (never a file).
rocksdb::Options LedgerDbOptions(size_t block_cache_bytes);
std::vector<rocksdb::ColumnFamilyDescriptor> LedgerCfDescriptors(const rocksdb::Options& opts);

// A new random log id: 32 hex digits.
std::string NewLogId();

// Refuses a directory that is missing (NOT_FOUND), empty (NOT_FOUND), not
// ours, or written by another format version.
absl::Status CheckFormat(const std::string& dir);

// `content` as dir/name, durably: written to a temporary file, synced,
// renamed over, and the directory synced; every step checked.
absl::Status WriteFileDurably(rocksdb::FileSystem* fs, const std::string& dir,
                              const std::string& name, absl::string_view content);
// The format file (schema::kFormatFile), durably.
absl::Status WriteFormatFile(rocksdb::FileSystem* fs, const std::string& dir);

}  // namespace careloop::storage
