#include "storage/rocksdb_projection.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {
namespace {
constexpr char kAppliedKey[] = "\x00careloop.applied_seq";
const std::string& AppliedKey() {
  static const std::string k(kAppliedKey, sizeof(kAppliedKey) - 1);
  return k;
}
}  // namespace

RocksDbProjection::~RocksDbProjection() {
  if (db_) db_->Close().PermitUncheckedError();
}

absl::Status RocksDbProjection::Open(const std::string& dir) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(opts, dir, &raw), absl::StrCat("opening projection ", dir)));
  db_.reset(raw);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RocksDbProjection::AppliedSeq() {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), AppliedKey(), &v);
  if (s.IsNotFound()) return uint64_t{0};
  RETURN_IF_ERROR(FromRocks(s, "reading the projection's applied seq"));
  return schema::DecodeBE64(v);
}

absl::Status RocksDbProjection::Apply(const std::vector<v1::Event>& events) {
  if (events.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  for (const v1::Event& e : events) RETURN_IF_ERROR(ApplyEvent(e, &batch));
  batch.Put(AppliedKey(), schema::BE64(events.back().header().seq()));
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "writing the projection");
}

}  // namespace careloop::storage
