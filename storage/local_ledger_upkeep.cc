// LocalLedger's upkeep: the background scrub and the fail-stop on damage it
// finds, backups, and restore.
#include <rocksdb/utilities/checkpoint.h>

#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "storage/ledger_db.h"
#include "storage/local_ledger.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"
#include "storage/verify.h"

namespace careloop::storage {

namespace fs = std::filesystem;
using schema::AsView;
using schema::DecodeBE64;

absl::Status LocalLedger::damage() const {
  if (!damaged_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&state_mu_);
  return damage_;
}

void LocalLedger::Damaged(const absl::Status& cause) {
  absl::Status loss = absl::DataLossError(
      absl::StrCat("the ledger is damaged and answers no reads: ", cause.message(),
                   ". Run careloop ledger verify and restore from a backup (docs/OPERATIONS.md)."));
  {
    absl::MutexLock lock(&state_mu_);
    if (damaged_.load()) return;
    damage_ = loss;
    damaged_.store(true, std::memory_order_release);
  }
  log::Error("ledger.damage_found", {{"cause", std::string(cause.message())}});
  StopWriter(absl::DataLossError(cause.message())).IgnoreError();
}

absl::StatusOr<VerifyReport> LocalLedger::Scrub() {
  RETURN_IF_ERROR(damage());
  // What has been acknowledged, then a snapshot that holds at least that
  // (rounds are written before they are published).
  HighWater published;
  {
    absl::MutexLock lock(&state_mu_);
    published = MarkOf(head_);
  }
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  absl::Cleanup release = [&] { db_->ReleaseSnapshot(snapshot); };
  VerifyScope scope;
  scope.db = db_.get();
  scope.cfs = &handles_;
  scope.snapshot = snapshot;
  scope.key = options_.verifier;
  scope.mark = std::optional<HighWater>(published);
  scope.parallel = false;
  scope.cancel = &scrub_cancel_;
  const absl::Time start = absl::Now();
  absl::StatusOr<VerifyReport> report = VerifyOpenLedger(scope);
  if (absl::IsCancelled(report.status())) return report.status();
  if (!report.ok()) {
    Damaged(report.status());
    return report.status();
  }
  if (!report->ok) {
    Damaged(absl::DataLossError(absl::StrCat("the scrub found damage at seq ",
                                             report->first_bad_seq, ": ", report->problem)));
    return report;
  }
  log::Info("ledger.scrubbed", {{"events", report->events},
                                {"heads", report->heads},
                                {"ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
  return report;
}

void LocalLedger::ScrubLoop() {
  absl::MutexLock lock(&scrub_mu_);
  while (!scrub_stop_) {
    scrub_mu_.AwaitWithTimeout(absl::Condition(&scrub_stop_), options_.scrub_interval);
    if (scrub_stop_) break;
    scrub_mu_.Unlock();
    absl::StatusOr<VerifyReport> report = Scrub();
    if (options_.test_after_scrub) options_.test_after_scrub(report);
    scrub_mu_.Lock();
    if (!damage().ok()) break;  // fail-stopped: nothing more to scrub
  }
}

absl::StatusOr<v1::BackupResponse> LocalLedger::Backup(const std::string& directory) {
  RETURN_IF_ERROR(damage());
  if (directory.empty()) return absl::InvalidArgumentError("name a backup directory");
  std::error_code ec;
  if (fs::exists(directory, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat("backup directory ", directory, " already exists"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "starting a backup"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  RETURN_IF_ERROR(FromRocks(checkpoint->CreateCheckpoint(directory), "writing the backup"));
  RETURN_IF_ERROR(WriteFormatFile(file_system(), directory));
  // The exact size captured: the last event in the copy.
  rocksdb::Options opts = LedgerDbOptions(8 << 20);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* copy = nullptr;
  RETURN_IF_ERROR(FromRocks(
      rocksdb::DB::OpenForReadOnly(opts, directory, LedgerCfDescriptors(opts), &handles, &copy),
      "reading the backup"));
  uint64_t size = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        copy->NewIterator(rocksdb::ReadOptions(), handles[schema::kEvents]));
    it->SeekToLast();
    if (it->Valid()) size = DecodeBE64(AsView(it->key()));
  }
  for (auto* h : handles) copy->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  delete copy;
  log::Info("ledger.backup", {{"dir", directory}, {"tree_size", size}});
  v1::BackupResponse resp;
  resp.set_directory(directory);
  resp.set_tree_size(size);
  return resp;
}

absl::StatusOr<RestoreResult> RestoreLedger(const std::string& backup_dir,
                                            const std::string& target_dir) {
  RETURN_IF_ERROR(CheckFormat(backup_dir));
  std::error_code ec;
  if (fs::exists(target_dir, ec) && !fs::is_empty(target_dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "restore target ", target_dir, " is not empty; move it away first (it may be evidence)"));
  }
  fs::create_directories(target_dir, ec);
  // The ledger is the backup's files; a directory beside them is another
  // component's part of the backup (the edge's), restored by its owner.
  for (const fs::directory_entry& e : fs::directory_iterator(backup_dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    fs::copy_file(e.path(), fs::path(target_dir) / e.path().filename(), ec);
    if (ec) break;
  }
  if (ec) return absl::InternalError(absl::StrCat("copying the backup: ", ec.message()));
  fs::remove(fs::path(target_dir) / schema::kHighWaterFile, ec);
  rocksdb::Options opts = LedgerDbOptions(8 << 20);
  opts.create_if_missing = false;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(opts, target_dir, LedgerCfDescriptors(opts), &handles, &raw),
                "opening the restored ledger"));
  std::unique_ptr<rocksdb::DB> db(raw);
  RestoreResult result;
  absl::Status status;
  std::string meta_bytes;
  v1::LedgerMeta meta;
  rocksdb::Status s =
      db->Get(rocksdb::ReadOptions(), handles[schema::kDefault], schema::kMetaKey, &meta_bytes);
  if (!s.ok() || !meta.ParseFromString(meta_bytes)) {
    status = absl::DataLossError("the backup has no readable ledger metadata");
  } else {
    result.previous_log_id = meta.log_id();
    meta.add_previous_log_ids(meta.log_id());
    meta.set_log_id(NewLogId());
    // The one place a high-water mark starts again: with the new log id,
    // at the restored size (the next open writes it).
    meta.set_high_water_mark(false);
    result.new_log_id = meta.log_id();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    status = FromRocks(
        db->Put(wo, handles[schema::kDefault], schema::kMetaKey, meta.SerializeAsString()),
        "writing the new log id");
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), handles[schema::kEvents]));
    it->SeekToLast();
    if (it->Valid()) result.tree_size = DecodeBE64(AsView(it->key()));
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db->Close().PermitUncheckedError();
  RETURN_IF_ERROR(status);
  return result;
}

}  // namespace careloop::storage
