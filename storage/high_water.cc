#include "storage/high_water.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/strings.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {
namespace {

constexpr char kMagic[8] = {'C', 'L', 'H', 'W', 'M', '\x01', '\0', '\0'};
constexpr size_t kSlotStride = 4096;  // each slot in its own page
constexpr size_t kBody = 8 + 8 + 8 + 32 + 32;
constexpr size_t kSlotBytes = kBody + 32;

std::string Path(const std::string& dir) { return absl::StrCat(dir, "/", schema::kHighWaterFile); }

void PutBE64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string EncodeSlot(const HighWater& m, uint64_t counter) {
  CARELOOP_CHECK(m.log_id.size() == 32);
  std::string s(kSlotBytes, '\0');
  std::memcpy(s.data(), kMagic, 8);
  PutBE64(s.data() + 8, counter);
  PutBE64(s.data() + 16, m.size);
  std::memcpy(s.data() + 24, m.root.data(), 32);
  std::memcpy(s.data() + 56, m.log_id.data(), 32);
  const Hash check = Sha256(absl::string_view(s.data(), kBody));
  std::memcpy(s.data() + kBody, check.data(), 32);
  return s;
}

struct Slot {
  HighWater mark;
  uint64_t counter = 0;
};

std::optional<Slot> DecodeSlot(absl::string_view s) {
  if (s.size() < kSlotBytes || std::memcmp(s.data(), kMagic, 8) != 0) return std::nullopt;
  const Hash check = Sha256(s.substr(0, kBody));
  if (std::memcmp(check.data(), s.data() + kBody, 32) != 0) return std::nullopt;
  Slot out;
  out.counter = GetBE64(s.data() + 8);
  out.mark.size = GetBE64(s.data() + 16);
  std::memcpy(out.mark.root.data(), s.data() + 24, 32);
  out.mark.log_id.assign(s.data() + 56, 32);
  return out;
}

absl::Status SyncDir(rocksdb::FileSystem* fs, const std::string& dir) {
  std::unique_ptr<rocksdb::FSDirectory> d;
  RETURN_IF_ERROR(FromRocks(fs->NewDirectory(dir, rocksdb::IOOptions(), &d, nullptr),
                            absl::StrCat("opening ", dir, " to sync it")));
  return FromRocks(d->Fsync(rocksdb::IOOptions(), nullptr), absl::StrCat("syncing ", dir));
}

// Both slots, read; the newest whole one.
absl::StatusOr<std::optional<Slot>> ReadSlots(rocksdb::FileSystem* fs, const std::string& path) {
  rocksdb::IOStatus exists = fs->FileExists(path, rocksdb::IOOptions(), nullptr);
  if (exists.IsNotFound()) return std::nullopt;
  RETURN_IF_ERROR(FromRocks(exists, absl::StrCat("looking for ", path)));
  std::unique_ptr<rocksdb::FSRandomAccessFile> f;
  RETURN_IF_ERROR(FromRocks(fs->NewRandomAccessFile(path, rocksdb::FileOptions(), &f, nullptr),
                            absl::StrCat("opening ", path)));
  std::optional<Slot> best;
  for (size_t i = 0; i < 2; ++i) {
    std::string buf(kSlotBytes, '\0');
    rocksdb::Slice got;
    RETURN_IF_ERROR(FromRocks(
        f->Read(i * kSlotStride, kSlotBytes, rocksdb::IOOptions(), &got, buf.data(), nullptr),
        absl::StrCat("reading ", path)));
    std::optional<Slot> s = DecodeSlot(absl::string_view(got.data(), got.size()));
    if (s.has_value() && (!best.has_value() || s->counter > best->counter)) best = s;
  }
  if (!best.has_value()) {
    return absl::DataLossError(absl::StrCat(
        path,
        " (the ledger's high-water mark) is damaged: neither copy is whole. The ledger "
        "cannot show that it holds everything it acknowledged; restore from a backup "
        "(careloop ledger restore) or run careloop ledger verify"));
  }
  return best;
}

}  // namespace

absl::StatusOr<std::optional<HighWater>> HighWaterFile::Read(rocksdb::FileSystem* fs,
                                                             const std::string& dir) {
  ASSIGN_OR_RETURN(std::optional<Slot> s, ReadSlots(fs, Path(dir)));
  if (!s.has_value()) return std::nullopt;
  return s->mark;
}

absl::StatusOr<std::unique_ptr<HighWaterFile>> HighWaterFile::Create(rocksdb::FileSystem* fs,
                                                                     const std::string& dir,
                                                                     const HighWater& mark) {
  const std::string path = Path(dir);
  {
    std::unique_ptr<rocksdb::FSWritableFile> w;
    RETURN_IF_ERROR(FromRocks(fs->NewWritableFile(path, rocksdb::FileOptions(), &w, nullptr),
                              absl::StrCat("creating ", path)));
    std::string content(kSlotStride + kSlotBytes, '\0');
    const std::string slot = EncodeSlot(mark, 1);
    content.replace(0, kSlotBytes, slot);
    content.replace(kSlotStride, kSlotBytes, slot);
    const rocksdb::IOOptions io;
    RETURN_IF_ERROR(FromRocks(w->Append(content, io, nullptr), absl::StrCat("writing ", path)));
    RETURN_IF_ERROR(FromRocks(w->Sync(io, nullptr), absl::StrCat("syncing ", path)));
    RETURN_IF_ERROR(FromRocks(w->Close(io, nullptr), absl::StrCat("closing ", path)));
  }
  RETURN_IF_ERROR(SyncDir(fs, dir));
  return OpenExisting(fs, dir);
}

absl::StatusOr<std::unique_ptr<HighWaterFile>> HighWaterFile::OpenExisting(rocksdb::FileSystem* fs,
                                                                           const std::string& dir) {
  const std::string path = Path(dir);
  ASSIGN_OR_RETURN(std::optional<Slot> s, ReadSlots(fs, path));
  if (!s.has_value()) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  std::unique_ptr<rocksdb::FSRandomRWFile> f;
  RETURN_IF_ERROR(FromRocks(fs->NewRandomRWFile(path, rocksdb::FileOptions(), &f, nullptr),
                            absl::StrCat("opening ", path, " for writing")));
  return std::unique_ptr<HighWaterFile>(new HighWaterFile(std::move(f), s->counter));
}

absl::Status HighWaterFile::Write(const HighWater& mark) {
  const uint64_t counter = counter_ + 1;
  const std::string slot = EncodeSlot(mark, counter);
  const rocksdb::IOOptions io;
  RETURN_IF_ERROR(FromRocks(file_->Write((counter % 2) * kSlotStride, slot, io, nullptr),
                            "writing the high-water mark"));
  RETURN_IF_ERROR(FromRocks(file_->Sync(io, nullptr), "syncing the high-water mark"));
  counter_ = counter;
  ++writes_;
  return absl::OkStatus();
}

}  // namespace careloop::storage
