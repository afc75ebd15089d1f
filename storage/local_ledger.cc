// LocalLedger: opening (state, high-water mark), the append path and the
// commit pipeline (writer, syncer, marker, notifier); a commit round itself
// is built in local_ledger_round.cc. Reads are in
// local_ledger_reads.cc, the scrub, backup and restore in
// local_ledger_upkeep.cc.
#include "storage/local_ledger.h"

#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"

namespace careloop::storage {

namespace fs = std::filesystem;
using schema::AsView;
using schema::BE64;
using schema::DecodeBE64;

namespace {

// Opening replays the WAL into new table files, then writes a new MANIFEST
// and WAL: room for the WAL's size again, plus this margin.
constexpr uint64_t kOpenMargin = 64ull << 20;

// Refuses clearly, before RocksDB would fail half way, when the disk holding
// `dir` has less room than opening it needs.
absl::Status CheckRoomToOpen(const std::string& dir) {
  uint64_t wal = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".log") wal += e.file_size(ec);
  }
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return absl::OkStatus();  // not knowable: let RocksDB try
  const uint64_t free = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  const uint64_t need = wal + kOpenMargin;
  if (free >= need) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the disk holding ", dir, " has ", free >> 20, " MiB free; opening this ledger replays ",
      wal >> 20, " MiB of write-ahead log and needs about ", need >> 20,
      " MiB. Free space (or move the data dir to a larger disk) and start again; nothing was "
      "changed"));
}

constexpr size_t kMaxTips = 200'000;  // published stream tips kept in memory
constexpr size_t kRecentHeads = 256;  // round heads kept for receipts

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream sos(&out);
  google::protobuf::io::CodedOutputStream cos(&sos);
  cos.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&cos);
  cos.Trim();
  return out;
}

}  // namespace

// The high-water mark a signed head stands for.
HighWater LocalLedger::MarkOf(const v1::SignedHead& head) {
  HighWater mark{head.log_id(), head.tree_size(), {}};
  CARELOOP_CHECK(head.root_hash().size() == mark.root.size());
  std::copy(head.root_hash().begin(), head.root_hash().end(), mark.root.begin());
  return mark;
}

LocalLedger::LocalLedger(LedgerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<LocalLedger>> LocalLedger::Open(LedgerOptions options) {
  if (options.signer == nullptr) return absl::InvalidArgumentError("a head signer is required");
  if (options.dir.empty()) return absl::InvalidArgumentError("the ledger directory is not set");
  if (options.clock == nullptr) options.clock = SystemClock();
  std::unique_ptr<LocalLedger> ledger(new LocalLedger(std::move(options)));
  RETURN_IF_ERROR(ledger->OpenDb());
  RETURN_IF_ERROR(ledger->LoadState());
  ledger->writer_ = std::thread(&LocalLedger::WriterLoop, ledger.get());
  ledger->notifier_ = std::thread(&LocalLedger::NotifierLoop, ledger.get());
  ledger->syncer_ = std::thread(&LocalLedger::SyncerLoop, ledger.get());
  ledger->marker_ = std::thread(&LocalLedger::MarkerLoop, ledger.get());
  if (ledger->options_.scrub_interval > absl::ZeroDuration())
    ledger->scrubber_ = std::thread(&LocalLedger::ScrubLoop, ledger.get());
  return ledger;
}

absl::Status LocalLedger::OpenDb() {
  const std::string& dir = options_.dir;
  absl::Status fmt = CheckFormat(dir);
  if (absl::IsNotFound(fmt)) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create ledger directory ", dir, ": ", ec.message()));
    }
    // The format file goes first: a directory with it and no database yet is
    // still recognised as ours after a crash.
    RETURN_IF_ERROR(WriteFormatFile(file_system(), dir));
  } else if (!fmt.ok()) {
    return fmt;
  }
  rocksdb::Options opts = LedgerDbOptions(options_.block_cache_bytes);
  if (options_.fs) {
    env_ = rocksdb::NewCompositeEnv(options_.fs);
    opts.env = env_.get();
  }
  RETURN_IF_ERROR(CheckRoomToOpen(dir));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, dir, LedgerCfDescriptors(opts), &handles_, &raw);
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(
        "opening ledger ", dir, ": ", s.ToString(),
        ". RocksDB found damage (its log line above names the file); careloopd will not cut "
        "the log short at it. Restore from a backup (careloop ledger restore) and run careloop "
        "ledger verify; keep this directory as evidence"));
  }
  if (!s.ok()) return FromRocks(s, absl::StrCat("opening ledger ", dir));
  db_.reset(raw);
  return absl::OkStatus();
}

absl::Status LocalLedger::LoadState() {
  std::string meta_bytes;
  v1::LedgerMeta meta;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf(schema::kDefault), schema::kMetaKey, &meta_bytes);
  if (s.IsNotFound()) {
    meta.set_format_version(schema::kFormatVersion);
    meta.set_log_id(NewLogId());
    meta.set_created_unix_nanos(absl::ToUnixNanos(options_.clock->Now()));
    meta.set_hub_name(options_.hub_name);
    meta.set_verifier_key(
        Ed25519VerifierKey(options_.signer->key_name(), options_.signer->public_key()));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(
        FromRocks(db_->Put(wo, cf(schema::kDefault), schema::kMetaKey, meta.SerializeAsString()),
                  "writing ledger metadata"));
  } else if (!s.ok()) {
    return FromRocks(s, "reading ledger metadata");
  } else if (!meta.ParseFromString(meta_bytes)) {
    return absl::DataLossError("ledger metadata is damaged");
  }
  if (meta.format_version() != schema::kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger metadata says format version ", meta.format_version(),
                     "; this careloopd reads ", schema::kFormatVersion));
  }
  log_id_ = meta.log_id();
  origin_ = OriginFor(options_.hub_name, log_id_);

  uint64_t size = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kEvents)));
    it->SeekToLast();
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the last event"));
    if (it->Valid()) size = DecodeBE64(AsView(it->key()));
  }
  RocksNodeReader reader(db_.get(), cf(schema::kMerkle));
  ASSIGN_OR_RETURN(tree_, merkle::CompactRange::Load(reader, size));

  v1::SignedHead head;
  bool have_head = false;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kHeads)));
    it->SeekToLast();
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the last tree head"));
    if (it->Valid()) {
      if (!head.ParseFromString(it->value().ToString())) {
        return absl::DataLossError(
            "the last stored tree head is damaged; run `careloop ledger verify`");
      }
      have_head = true;
    }
  }
  if (have_head && head.tree_size() != size) {
    return absl::DataLossError(absl::StrCat("ledger is inconsistent: the last tree head covers ",
                                            head.tree_size(), " events but ", size,
                                            " are stored; run `careloop ledger verify`"));
  }
  Hash root = tree_.Root();
  if (have_head && head.root_hash() != AsStringView(root)) {
    return absl::DataLossError(
        "ledger is inconsistent: the stored tree does not match the last signed head; run "
        "`careloop ledger verify`");
  }
  if (!have_head || head.log_id() != log_id_) {
    // A new ledger, or the first start after a restore: sign a head for the
    // current size under the current log id, so monitors see it at once.
    ASSIGN_OR_RETURN(head, SignHead(size, root, options_.clock->Now()));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(
        FromRocks(db_->Put(wo, cf(schema::kHeads), BE64(size), head.SerializeAsString()),
                  "writing the tree head"));
  }
  RETURN_IF_ERROR(CheckHighWater(&meta, size, root));
  {
    absl::MutexLock lock(&state_mu_);
    head_ = head;
    recent_heads_.assign(1, head);
  }
  last_head_ = head;
  size_.store(size, std::memory_order_release);
  log::Info("ledger.opened", {{"dir", options_.dir}, {"log_id", log_id_}, {"tree_size", size}});
  return absl::OkStatus();
}

absl::StatusOr<v1::SignedHead> LocalLedger::SignHead(uint64_t size, const Hash& root,
                                                     absl::Time time) {
  Checkpoint cp{origin_, size, root, absl::ToUnixNanos(time)};
  ASSIGN_OR_RETURN(std::string note, SignCheckpoint(cp, *options_.signer));
  v1::SignedHead head;
  head.set_log_id(log_id_);
  head.set_tree_size(size);
  head.set_root_hash(std::string(AsStringView(root)));
  head.set_time_unix_nanos(cp.time_unix_nanos);
  head.set_checkpoint(std::move(note));
  return head;
}

rocksdb::FileSystem* LocalLedger::file_system() const {
  return options_.fs ? options_.fs.get() : rocksdb::FileSystem::Default().get();
}

absl::Status LocalLedger::CheckHighWater(v1::LedgerMeta* meta, uint64_t size, const Hash& root) {
  const std::string& dir = options_.dir;
  ASSIGN_OR_RETURN(std::optional<HighWater> mark, HighWaterFile::Read(file_system(), dir));
  if (!mark.has_value()) {
    if (meta->high_water_mark()) {
      return absl::DataLossError(absl::StrCat(
          dir, "/", schema::kHighWaterFile,
          " (the ledger's high-water mark) is missing: this ledger cannot show that it holds "
          "everything it acknowledged. A copied backup is not a restore: use careloop ledger "
          "restore, which starts a new log id; otherwise restore from a backup or run careloop "
          "ledger verify"));
    }
    // A new ledger, a restored one, or one written before marks existed:
    // the mark starts here, then the metadata says it exists.
    ASSIGN_OR_RETURN(high_water_,
                     HighWaterFile::Create(file_system(), dir, HighWater{log_id_, size, root}));
    meta->set_high_water_mark(true);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(
        FromRocks(db_->Put(wo, cf(schema::kDefault), schema::kMetaKey, meta->SerializeAsString()),
                  "recording the high-water mark in the ledger metadata"));
    log::Info("ledger.high_water_created", {{"log_id", log_id_}, {"tree_size", size}});
    return absl::OkStatus();
  }
  if (mark->log_id != log_id_) {
    return absl::DataLossError(absl::StrCat(
        "the high-water mark in ", dir, " is of log id ", mark->log_id, " but the ledger is ",
        log_id_,
        ": the database was replaced without careloop ledger restore. Restore it "
        "with careloop ledger restore (a new log id), or put back the database it belongs to"));
  }
  if (size < mark->size) {
    return absl::DataLossError(absl::StrCat(
        "the ledger in ", dir, " starts short: it holds ", size, " events but acknowledged ",
        mark->size,
        " (its high-water mark). Its write-ahead log or tables lost acknowledged "
        "events; careloopd will not serve a shorter log or sign a second history under log id ",
        log_id_,
        ". Restore from a backup (careloop ledger restore) and run careloop ledger "
        "verify; keep this directory as evidence"));
  }
  Hash at_mark = root;
  if (size != mark->size) {
    RocksNodeReader reader(db_.get(), cf(schema::kMerkle));
    ASSIGN_OR_RETURN(merkle::CompactRange r, merkle::CompactRange::Load(reader, mark->size));
    at_mark = r.Root();
  }
  if (at_mark != mark->root) {
    return absl::DataLossError(absl::StrCat(
        "the ledger in ", dir, " has forked: its tree at size ", mark->size,
        " is not the one it acknowledged (its high-water mark). Restore from a backup "
        "(careloop ledger restore) and run careloop ledger verify; keep this directory as "
        "evidence"));
  }
  ASSIGN_OR_RETURN(high_water_, HighWaterFile::OpenExisting(file_system(), dir));
  // Rounds synced after the last mark were never answered; they are durable
  // and served from now on, so the mark covers them too.
  if (size != mark->size) RETURN_IF_ERROR(high_water_->Write(HighWater{log_id_, size, root}));
  return absl::OkStatus();
}

absl::Status LocalLedger::MarkHighWater(const v1::SignedHead& head) {
  return high_water_->Write(MarkOf(head));
}

LocalLedger::~LocalLedger() { Close().IgnoreError(); }

absl::Status LocalLedger::Close() {
  absl::MutexLock close_lock(&close_mu_);
  if (closed_) return absl::OkStatus();
  closed_ = true;
  {
    absl::MutexLock lock(&scrub_mu_);
    scrub_stop_ = true;
  }
  scrub_cancel_.store(true);  // a scrub under way is abandoned
  if (scrubber_.joinable()) scrubber_.join();
  {
    absl::MutexLock lock(&queue_mu_);
    closing_ = true;
  }
  if (writer_.joinable()) writer_.join();
  {
    absl::MutexLock lock(&sync_mu_);
    syncer_stop_ = true;
  }
  if (syncer_.joinable()) syncer_.join();  // the last written rounds are synced
  {
    absl::MutexLock lock(&mark_mu_);
    marker_stop_ = true;
  }
  if (marker_.joinable()) marker_.join();  // and marked and answered
  {
    absl::MutexLock lock(&state_mu_);
    notifier_stop_ = true;
  }
  if (notifier_.joinable()) notifier_.join();
  absl::Status result;
  if (db_ && writer_status().ok()) {
    // A clean stop leaves nothing to replay at the next start.
    rocksdb::FlushOptions fo;
    result = FromRocks(db_->Flush(fo, handles_), "flushing at close");
  }
  if (db_) {
    for (auto* h : handles_) {
      rocksdb::Status s = db_->DestroyColumnFamilyHandle(h);
      if (result.ok()) result = FromRocks(s, "closing column family");
    }
    handles_.clear();
    rocksdb::Status s = db_->Close();
    // After a fail-stop RocksDB may report the background error again here;
    // the writer has already logged it, so the close result only informs.
    if (result.ok()) result = FromRocks(s, "closing the ledger database");
    db_.reset();
  }
  log::Info("ledger.closed", {{"dir", options_.dir}, {"tree_size", size()}});
  return result;
}

absl::Status LocalLedger::writer_status() const {
  absl::MutexLock lock(&state_mu_);
  return writer_status_;
}

void LocalLedger::AppendAsync(v1::AppendRequest request, AppendCallback done) {
  if (absl::Status s = ValidateAppend(request, options_.limits); !s.ok()) {
    done(s);
    return;
  }
  if (writer_stopped_.load(std::memory_order_acquire)) {
    done(writer_status());
    return;
  }
  Pending p;
  if (!request.idempotency_key().empty()) {
    v1::AppendRequest content = request;
    content.clear_idempotency_key();
    p.content_hash = Sha256(DeterministicBytes(content));
  }
  p.payload_hashes.reserve(request.events_size());
  for (const v1::EventInput& e : request.events()) p.payload_hashes.push_back(Sha256(e.payload()));
  p.request = std::move(request);
  p.done = std::move(done);
  absl::Status refusal;
  {
    absl::MutexLock lock(&queue_mu_);
    if (!closing_ && queue_.size() < options_.queue_capacity) {
      queue_.push_back(std::move(p));
      return;
    }
    refusal = closing_ ? absl::UnavailableError("the ledger is shutting down")
                       : absl::ResourceExhaustedError(
                             absl::StrCat("the ledger's append queue is full (",
                                          options_.queue_capacity, " requests); retry later"));
  }
  p.done(refusal);
}

void LocalLedger::WriterLoop() {
  std::vector<Pending> round;
  while (true) {
    round.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](LocalLedger* self)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return !self->queue_.empty() || self->closing_; },
          this));
      if (queue_.empty() && closing_) return;
      if (options_.test_before_round) {
        queue_mu_.Unlock();
        options_.test_before_round();
        queue_mu_.Lock();
      }
      size_t events = 0, bytes = 0;
      while (!queue_.empty()) {
        const v1::AppendRequest& r = queue_.front().request;
        size_t e = static_cast<size_t>(r.events_size());
        size_t b = r.ByteSizeLong();
        if (!round.empty() &&
            (events + e > options_.max_round_events || bytes + b > options_.max_round_bytes)) {
          break;
        }
        events += e;
        bytes += b;
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (absl::Status s = writer_status(); !s.ok()) {
      WrittenRound refused;
      for (Pending& p : round) refused.answers.emplace_back(std::move(p.done), s);
      HandToSyncer(std::move(refused));
      continue;
    }
    ProcessRound(round);
  }
}

absl::StatusOr<std::optional<uint64_t>> LocalLedger::FirstSeq(absl::string_view stream) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kStreams),
                               schema::PrefixedKey(stream, 1), &value);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading stream ", stream)));
  return std::optional<uint64_t>(DecodeBE64(value));
}

absl::StatusOr<std::optional<uint64_t>> LocalLedger::KnownVersion(absl::string_view stream,
                                                                  uint64_t size) {
  {
    absl::ReaderMutexLock lock(&tips_mu_);
    if (auto it = tips_.find(stream); it != tips_.end() && it->second.seq <= size)
      return std::optional<uint64_t>(it->second.version);
  }
  ASSIGN_OR_RETURN(std::optional<uint64_t> first, FirstSeq(stream));
  if (!first.has_value() || *first > size) return std::optional<uint64_t>(0);
  return std::optional<uint64_t>();
}

absl::StatusOr<uint64_t> LocalLedger::ReadStreamVersion(const std::string& stream) {
  if (auto it = stream_versions_.find(stream); it != stream_versions_.end()) return it->second;
  // Most streams an append names are new (message markers, new referrals):
  // one point read says so.
  ASSIGN_OR_RETURN(std::optional<uint64_t> first, FirstSeq(stream));
  if (!first.has_value()) return uint64_t{0};
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kStreams)));
  std::string upper = schema::PrefixedKey(stream, UINT64_MAX);
  it->SeekForPrev(upper);
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("reading stream ", stream)));
  uint64_t version = 0;
  if (it->Valid()) {
    absl::string_view key = AsView(it->key());
    if (key.size() == stream.size() + 9 && key.substr(0, stream.size()) == stream &&
        key[stream.size()] == '\0') {
      version = DecodeBE64(key.substr(stream.size() + 1));
    }
  }
  return version;
}

absl::Status LocalLedger::StopWriter(const absl::Status& cause) {
  // Damage found in the ledger is not retryable: appends answer DATA_LOSS.
  absl::Status stopped =
      absl::IsDataLoss(cause)
          ? absl::DataLossError(absl::StrCat(
                "the ledger writer stopped on damage found in the ledger and acknowledges "
                "nothing more: ",
                cause.message(),
                ". Run careloop ledger verify and restore from a backup (docs/OPERATIONS.md)."))
          : absl::UnavailableError(absl::StrCat(
                "the ledger writer stopped after a failed write and acknowledges nothing more: ",
                cause.message(), ". Fix the cause and restart careloopd."));
  bool first = false;
  {
    absl::MutexLock lock(&state_mu_);
    if (writer_status_.ok()) {
      writer_status_ = stopped;
      writer_stopped_.store(true, std::memory_order_release);
      first = true;
    }
    stopped = writer_status_;
    ++published_generation_;  // wake waiters so that they see the failure
  }
  if (first) {
    log::Error("ledger.writer_fail_stop", {{"cause", std::string(cause.message())},
                                           {"code", absl::StatusCodeToString(cause.code())},
                                           {"tree_size", size()}});
  }
  return stopped;
}

void LocalLedger::FailStop(const absl::Status& cause, std::vector<Pending>* round) {
  absl::Status stopped = StopWriter(cause);
  std::vector<Completion> batch;
  for (Pending& p : *round) batch.emplace_back(std::move(p.done), stopped);
  // Behind the rounds already written: answers keep their order.
  WrittenRound failed;
  failed.answers = std::move(batch);
  HandToSyncer(std::move(failed));
}

void LocalLedger::HandToSyncer(WrittenRound round) {
  absl::MutexLock lock(&sync_mu_);
  // Bounded pipeline: at most max_unsynced_rounds written ahead of the sync.
  auto room = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return unsynced_.size() + in_flight_ < std::max<size_t>(1, options_.max_unsynced_rounds) ||
           syncer_stop_;
  };
  sync_mu_.Await(absl::Condition(&room));
  unsynced_.push_back(std::move(round));
}

void LocalLedger::SyncerLoop() {
  while (true) {
    SyncedGroup group;
    {
      absl::MutexLock lock(&sync_mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !unsynced_.empty() || syncer_stop_;
      };
      sync_mu_.Await(absl::Condition(&ready));
      if (unsynced_.empty()) return;  // stopping, and every round is handed on
      group.rounds.swap(unsynced_);
      in_flight_ += group.rounds.size();
    }
    bool wrote = false;
    for (const WrittenRound& r : group.rounds) wrote |= r.wrote;
    // Once the writer stopped, nothing more is synced for an answer: not
    // even rounds written before it stopped, whose sync might now succeed
    // (on Linux a retried fsync can succeed after the failed one dropped
    // their pages).
    group.synced = writer_status();
    if (group.synced.ok() && wrote && !options_.unsafe_no_sync) {
      group.synced = FromRocks(db_->SyncWAL(), "syncing the write-ahead log");
      if (group.synced.ok()) syncs_.fetch_add(1);
    }
    if (!group.synced.ok()) StopWriter(group.synced).IgnoreError();
    absl::MutexLock lock(&mark_mu_);
    synced_.push_back(std::move(group));
  }
}

void LocalLedger::MarkerLoop() {
  while (true) {
    std::deque<SyncedGroup> groups;
    {
      absl::MutexLock lock(&mark_mu_);
      auto ready = [this]()
                       ABSL_NO_THREAD_SAFETY_ANALYSIS { return !synced_.empty() || marker_stop_; };
      mark_mu_.Await(absl::Condition(&ready));
      if (synced_.empty()) return;  // stopping, and every round is answered
      groups.swap(synced_);
    }
    std::vector<WrittenRound> rounds;
    absl::Status status;
    for (SyncedGroup& g : groups) {
      if (status.ok()) status = g.synced;
      for (WrittenRound& r : g.rounds) rounds.push_back(std::move(r));
    }
    const WrittenRound* last = nullptr;
    for (const WrittenRound& r : rounds) {
      if (r.new_head) last = &r;
    }
    // One mark covers every group synced so far, before any of their
    // answers; meanwhile the syncer fsyncs the WAL for the next ones. Once
    // the writer stopped, nothing more is acknowledged.
    if (status.ok()) status = writer_status();
    if (status.ok() && last != nullptr && !options_.unsafe_no_sync) {
      status = MarkHighWater(last->head);
    }
    std::vector<Completion> answers;
    if (!status.ok()) {
      absl::Status stopped = StopWriter(status);
      for (WrittenRound& r : rounds) {
        for (auto& [done, result] : r.answers) answers.emplace_back(std::move(done), stopped);
      }
    } else {
      Publish(rounds, last, &answers);
    }
    {
      absl::MutexLock lock(&sync_mu_);
      in_flight_ -= rounds.size();  // the writer may go on while the callers are woken
    }
    for (auto& [done, result] : answers) done(std::move(result));
  }
}

void LocalLedger::Publish(std::vector<WrittenRound>& rounds, const WrittenRound* last,
                          std::vector<Completion>* answers) {
  uint64_t events = 0;
  for (const WrittenRound& r : rounds) events += r.events;
  {
    // Before the size: a reader that sees the size sees these too.
    absl::MutexLock lock(&tips_mu_);
    for (WrittenRound& r : rounds) {
      if (tips_.size() + r.tips.size() > kMaxTips) tips_.clear();  // bounded
      for (auto& [stream, tip] : r.tips) tips_[std::move(stream)] = tip;
    }
  }
  for (const WrittenRound& r : rounds) nodes_.Add(r.nodes);
  if (last != nullptr) {
    absl::MutexLock lock(&state_mu_);
    for (const WrittenRound& r : rounds) {
      if (!r.new_head) continue;
      recent_heads_.push_back(r.head);
      if (recent_heads_.size() > kRecentHeads) recent_heads_.pop_front();
    }
    head_ = last->head;
    size_.store(last->size, std::memory_order_release);
    ++published_generation_;
  }
  events_written_.fetch_add(events);
  for (WrittenRound& r : rounds) {
    for (auto& a : r.answers) answers->push_back(std::move(a));
  }
}

void LocalLedger::SweepIdempotency(absl::Time now, rocksdb::WriteBatch* wb) {
  if (now - last_sweep_ < absl::Seconds(1)) return;
  last_sweep_ = now;
  const uint64_t cutoff =
      static_cast<uint64_t>(absl::ToUnixMicros(now - options_.idempotency_window));
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kIdemExpiry)));
  int budget = 1000;  // bounded work per round
  for (it->SeekToFirst(); it->Valid() && budget-- > 0; it->Next()) {
    absl::string_view k = AsView(it->key());
    if (k.size() < 8) continue;
    uint64_t t = DecodeBE64(k.substr(0, 8));
    if (t >= cutoff) break;
    std::string key(k.substr(8));
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kIdempotency), key, &value);
    v1::StoredIdempotency rec;
    if (s.ok() && rec.ParseFromString(value) &&
        schema::IdemExpiryKey(rec.commit().commit_time_unix_nanos(), key) == k) {
      wb->Delete(cf(schema::kIdempotency), key);
    }
    wb->Delete(cf(schema::kIdemExpiry), it->key());
  }
}

void LocalLedger::NotifierLoop() {
  uint64_t seen = 0;
  while (true) {
    uint64_t size = 0;
    {
      absl::MutexLock lock(&state_mu_);
      auto ready = [this, &seen]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return (published_generation_ != seen && listener_count_.load() > 0) || notifier_stop_;
      };
      state_mu_.Await(absl::Condition(&ready));
      if (notifier_stop_) return;
      seen = published_generation_;
      size = size_.load();
    }
    std::vector<std::shared_ptr<CommitListener>> listeners;
    {
      absl::MutexLock lock(&listeners_mu_);
      for (auto& [id, l] : listeners_) listeners.push_back(l);
    }
    for (auto& l : listeners) (*l)(size);
  }
}

uint64_t LocalLedger::AddCommitListener(CommitListener listener) {
  absl::MutexLock lock(&listeners_mu_);
  uint64_t id = next_listener_id_++;
  listeners_[id] = std::make_shared<CommitListener>(std::move(listener));
  {
    // Under state_mu_, so that a notifier waiting on it re-checks its condition.
    absl::MutexLock state_lock(&state_mu_);
    listener_count_.fetch_add(1);
  }
  return id;
}

void LocalLedger::RemoveCommitListener(uint64_t id) {
  absl::MutexLock lock(&listeners_mu_);
  if (listeners_.erase(id) > 0) listener_count_.fetch_sub(1);
}

}  // namespace careloop::storage
