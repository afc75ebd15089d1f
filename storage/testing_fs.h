// File systems that wrap RocksDB's, for tests that are about faults.
//
// PowerLossFileSystem keeps every byte written since a file's last sync in
// this process's memory, so that kill -9 loses them the way a power cut loses
// the page cache. (Without it, kill -9 alone would keep unsynced writes in the
// OS page cache, and a ledger that acknowledged before fsync would still pass
// a crash test.) Bytes of a file closed without a sync are handed to the OS at
// close, which is the one place where it is kinder than a power cut.
//
// FaultInjectionFileSystem fails syncs, or makes appends and new files fail
// with "no space", on demand.
#pragma once

#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>
#include <string>

namespace careloop::storage {

class PowerLossFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerLossFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "CareloopPowerLossFileSystem"; }
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
};

class FaultInjectionFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultInjectionFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "CareloopFaultInjectionFileSystem"; }

  // Every Sync/Fsync of a file fails while set.
  void set_fail_sync(bool v) { fail_sync_.store(v); }
  // The next `n` syncs fail, then syncs succeed again (Linux may report a
  // failed writeback once and succeed on the retry).
  void fail_next_syncs(int n) { fail_next_syncs_.store(n); }
  // Appends and new writable files fail with "no space left" while set.
  void set_no_space(bool v) { no_space_.store(v); }
  uint64_t syncs() const { return syncs_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override;

  // Counts a sync and says whether it fails.
  bool SyncFails();
  std::atomic<bool> fail_sync_{false};
  std::atomic<int> fail_next_syncs_{0};
  std::atomic<bool> no_space_{false};
  std::atomic<uint64_t> syncs_{0};
};

}  // namespace careloop::storage
