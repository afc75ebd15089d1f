// The ledger's RocksDB database as a directory on disk: its options and
// column families (schema.h's layout), the format file, and small files
// written durably.
#include "storage/ledger_db.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/status.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {

namespace fs = std::filesystem;

namespace {

// Keys "<prefix><BE64(n)>" (events, payloads, tree nodes, heads, streams and
// indexes) arrive in order of n for each prefix: the memtable keeps one
// insert position per prefix and starts each insert from it.
class AllButLast8 final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "careloop.AllButLast8"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return {key.data(), key.size() - 8};
  }
  bool InDomain(const rocksdb::Slice& key) const override { return key.size() >= 8; }
};

// RocksDB's messages at WARN and above, as careloop log lines (file names
// and reasons; keys carry no personal data). Nothing is written to disk, so
// nothing here can fail or abort when the disk is full.
class ForwardingLogger final : public rocksdb::Logger {
 public:
  ForwardingLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    const int n = std::vsnprintf(buf, sizeof buf, format, ap);
    if (n < 0) return;
    const std::string message(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      log::Error("rocksdb", {{"message", message}});
    } else {
      log::Warn("rocksdb", {{"message", message}});
    }
  }
};

}  // namespace

rocksdb::Options LedgerDbOptions(size_t block_cache_bytes) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.create_missing_column_families = true;
  // A torn tail (an unsynced write cut by a crash) is dropped; any other
  // damage in the WAL stops the open instead of silently truncating the log
  // at it (kPointInTimeRecovery would, losing what was acknowledged after).
  // The high-water mark then catches whatever is still missing.
  opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  // Every flush commits all column families in one MANIFEST record group.
  // Otherwise a MANIFEST whose tail is damaged (RocksDB drops a bad tail
  // record as torn) can lose the flush of the idempotency records or the
  // cursors alone, whose WAL is gone: the ledger would open with its events
  // whole and those silently empty. With the group whole or dropped, the
  // events go back with them, and the high-water mark refuses the start.
  opts.atomic_flush = true;
  // RocksDB's own log goes to ours, never to a file on the data disk: a full
  // disk must not turn its info log into an abort.
  opts.info_log = std::make_shared<ForwardingLogger>();
  opts.max_background_jobs = 2;
  opts.keep_log_file_num = 4;
  // Column families that see few writes (heads, cursors, idempotency) would
  // otherwise keep old WAL files alive, and a restart would replay them all.
  // Bounding the WAL bounds the replay: restart takes seconds at any size.
  opts.max_total_wal_size = 64 << 20;
  // One thread writes (the ledger writer): the single-writer memtable insert
  // path is cheaper than the concurrent one.
  opts.allow_concurrent_memtable_write = false;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return opts;
}

std::vector<rocksdb::ColumnFamilyDescriptor> LedgerCfDescriptors(const rocksdb::Options& opts) {
  static const std::shared_ptr<const rocksdb::SliceTransform> hint =
      std::make_shared<AllButLast8>();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (int i = 0; i < schema::kNumCfs; ++i) {
    rocksdb::ColumnFamilyOptions cf(opts);
    switch (i) {
      case schema::kStreams:
        // Most lookups are of a new stream's version 1, which does not exist:
        // a whole-key bloom filter answers them in the memtable too, as the
        // table's filter does in the files.
        cf.memtable_whole_key_filtering = true;
        cf.memtable_prefix_bloom_size_ratio = 0.02;
        [[fallthrough]];
      case schema::kEvents:
      case schema::kPayloads:
      case schema::kAgencyIndex:
      case schema::kSubjectIndex:
      case schema::kMerkle:
      case schema::kHeads:
        cf.memtable_insert_with_hint_prefix_extractor = hint;
        break;
      default:
        break;
    }
    cfs.emplace_back(schema::CfNames()[i], cf);
  }
  return cfs;
}

std::string NewLogId() { return HexEncode(RandomBytes(16)); }

absl::Status WriteFileDurably(rocksdb::FileSystem* fs, const std::string& dir,
                              const std::string& name, absl::string_view content) {
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const rocksdb::IOOptions io;
  {
    std::unique_ptr<rocksdb::FSWritableFile> w;
    RETURN_IF_ERROR(FromRocks(fs->NewWritableFile(tmp, rocksdb::FileOptions(), &w, nullptr),
                              absl::StrCat("creating ", tmp)));
    RETURN_IF_ERROR(
        FromRocks(w->Append(rocksdb::Slice(content.data(), content.size()), io, nullptr),
                  absl::StrCat("writing ", tmp)));
    RETURN_IF_ERROR(FromRocks(w->Sync(io, nullptr), absl::StrCat("syncing ", tmp)));
    RETURN_IF_ERROR(FromRocks(w->Close(io, nullptr), absl::StrCat("closing ", tmp)));
  }
  RETURN_IF_ERROR(FromRocks(fs->RenameFile(tmp, path, io, nullptr),
                            absl::StrCat("renaming ", tmp, " to ", path)));
  std::unique_ptr<rocksdb::FSDirectory> d;
  RETURN_IF_ERROR(FromRocks(fs->NewDirectory(dir, io, &d, nullptr),
                            absl::StrCat("opening ", dir, " to sync it")));
  return FromRocks(d->Fsync(io, nullptr), absl::StrCat("syncing ", dir));
}

absl::Status WriteFormatFile(rocksdb::FileSystem* fs, const std::string& dir) {
  return WriteFileDurably(fs, dir, schema::kFormatFile,
                          absl::StrCat(schema::kFormatPrefix, schema::kFormatVersion, "\n"));
}

absl::Status CheckFormat(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, " does not exist"));
  if (!fs::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  }
  if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("ledger directory ", dir, " is not readable and writable by this user"));
  }
  if (fs::is_empty(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, " is empty"));
  fs::path format = fs::path(dir) / schema::kFormatFile;
  if (!fs::exists(format, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not empty and holds no careloop ledger (no ", schema::kFormatFile,
                     " file); refusing to use it"));
  }
  std::ifstream in(format);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::PermissionDeniedError(absl::StrCat("cannot read ", format.string()));
  }
  absl::string_view v = line;
  uint32_t version = 0;
  if (!absl::ConsumePrefix(&v, schema::kFormatPrefix) || !absl::SimpleAtoi(v, &version)) {
    return absl::FailedPreconditionError(
        absl::StrCat(format.string(), " is not a careloop format file"));
  }
  if (version != schema::kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " was written by ledger format version ", version, "; this careloopd reads format ",
        schema::kFormatVersion, ". Run a careloopd that reads it, or restore a backup."));
  }
  return absl::OkStatus();
}

}  // namespace careloop::storage
