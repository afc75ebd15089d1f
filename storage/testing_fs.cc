#include "storage/testing_fs.h"

#include <string>

#include "absl/synchronization/mutex.h"

namespace careloop::storage {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// Buffers appends until Sync/Fsync; then writes them through and syncs.
// RocksDB may sync from one thread while another appends (SyncWAL beside
// Write), so every operation holds the file's mutex.
class UnsyncedBufferFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  explicit UnsyncedBufferFile(std::unique_ptr<rocksdb::FSWritableFile> f)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(f)) {}
  ~UnsyncedBufferFile() override = default;

  IOStatus Append(const Slice& data, const IOOptions&, IODebugContext*) override {
    absl::MutexLock lock(&mu_);
    buffer_.append(data.data(), data.size());
    return IOStatus::OK();
  }
  IOStatus Append(const Slice& data, const IOOptions& o, const rocksdb::DataVerificationInfo&,
                  IODebugContext* dbg) override {
    return Append(data, o, dbg);
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    IOStatus s = WriteThrough(o, dbg);
    if (!s.ok()) return s;
    return target()->PositionedAppend(data, offset, o, dbg);
  }
  IOStatus Flush(const IOOptions&, IODebugContext*) override { return IOStatus::OK(); }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    IOStatus s = WriteThrough(o, dbg);
    if (!s.ok()) return s;
    return target()->Sync(o, dbg);
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    IOStatus s = WriteThrough(o, dbg);
    if (!s.ok()) return s;
    return target()->Fsync(o, dbg);
  }
  bool IsSyncThreadSafe() const override { return true; }
  IOStatus RangeSync(uint64_t, uint64_t, const IOOptions&, IODebugContext*) override {
    return IOStatus::OK();  // a hint only; durability comes from Sync
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    IOStatus s = WriteThrough(o, dbg);
    if (!s.ok()) return s;
    return target()->Truncate(size, o, dbg);
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    IOStatus s = WriteThrough(o, dbg);
    if (!s.ok()) return s;
    return target()->Close(o, dbg);
  }
  uint64_t GetFileSize(const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&mu_);
    return target()->GetFileSize(o, dbg) + buffer_.size();
  }

 private:
  IOStatus WriteThrough(const IOOptions& o, IODebugContext* dbg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (buffer_.empty()) return IOStatus::OK();
    IOStatus s = target()->Append(buffer_, o, dbg);
    if (!s.ok()) return s;
    buffer_.clear();
    return target()->Flush(o, dbg);
  }
  absl::Mutex mu_;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
};

class FaultyFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyFile(std::unique_ptr<rocksdb::FSWritableFile> f, FaultInjectionFileSystem* fs)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    if (fs_->no_space_.load()) return IOStatus::NoSpace("injected: no space left on device");
    return target()->Append(data, o, dbg);
  }
  IOStatus Append(const Slice& data, const IOOptions& o, const rocksdb::DataVerificationInfo&,
                  IODebugContext* dbg) override {
    return Append(data, o, dbg);
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    if (fs_->SyncFails()) return IOStatus::IOError("injected: fsync failed");
    return target()->Sync(o, dbg);
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    if (fs_->SyncFails()) return IOStatus::IOError("injected: fsync failed");
    return target()->Fsync(o, dbg);
  }

 private:
  FaultInjectionFileSystem* fs_;
};

// The high-water mark's file is written in place.
class FaultyRWFile final : public rocksdb::FSRandomRWFileOwnerWrapper {
 public:
  FaultyRWFile(std::unique_ptr<rocksdb::FSRandomRWFile> f, FaultInjectionFileSystem* fs)
      : rocksdb::FSRandomRWFileOwnerWrapper(std::move(f)), fs_(fs) {}
  IOStatus Write(uint64_t offset, const Slice& data, const IOOptions& o,
                 IODebugContext* dbg) override {
    if (fs_->no_space_.load()) return IOStatus::NoSpace("injected: no space left on device");
    return target()->Write(offset, data, o, dbg);
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    if (fs_->SyncFails()) return IOStatus::IOError("injected: fsync failed");
    return target()->Sync(o, dbg);
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    if (fs_->SyncFails()) return IOStatus::IOError("injected: fsync failed");
    return target()->Fsync(o, dbg);
  }

 private:
  FaultInjectionFileSystem* fs_;
};

}  // namespace

IOStatus PowerLossFileSystem::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> base;
  IOStatus s = target()->NewWritableFile(f, o, &base, dbg);
  if (s.ok()) r->reset(new UnsyncedBufferFile(std::move(base)));
  return s;
}

IOStatus PowerLossFileSystem::ReopenWritableFile(const std::string& f,
                                                 const rocksdb::FileOptions& o,
                                                 std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                 IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> base;
  IOStatus s = target()->ReopenWritableFile(f, o, &base, dbg);
  if (s.ok()) r->reset(new UnsyncedBufferFile(std::move(base)));
  return s;
}

IOStatus FaultInjectionFileSystem::NewWritableFile(const std::string& f,
                                                   const rocksdb::FileOptions& o,
                                                   std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                   IODebugContext* dbg) {
  if (no_space_.load()) return IOStatus::NoSpace("injected: no space left on device");
  std::unique_ptr<rocksdb::FSWritableFile> base;
  IOStatus s = target()->NewWritableFile(f, o, &base, dbg);
  if (s.ok()) r->reset(new FaultyFile(std::move(base), this));
  return s;
}

bool FaultInjectionFileSystem::SyncFails() {
  syncs_.fetch_add(1);
  if (fail_sync_.load()) return true;
  int left = fail_next_syncs_.load();
  while (left > 0) {
    if (fail_next_syncs_.compare_exchange_weak(left, left - 1)) return true;
  }
  return false;
}

IOStatus FaultInjectionFileSystem::NewRandomRWFile(const std::string& f,
                                                   const rocksdb::FileOptions& o,
                                                   std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                                   IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSRandomRWFile> base;
  IOStatus s = target()->NewRandomRWFile(f, o, &base, dbg);
  if (s.ok()) r->reset(new FaultyRWFile(std::move(base), this));
  return s;
}

IOStatus FaultInjectionFileSystem::ReopenWritableFile(const std::string& f,
                                                      const rocksdb::FileOptions& o,
                                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                      IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> base;
  IOStatus s = target()->ReopenWritableFile(f, o, &base, dbg);
  if (s.ok()) r->reset(new FaultyFile(std::move(base), this));
  return s;
}

}  // namespace careloop::storage
