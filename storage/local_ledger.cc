#include "storage/local_ledger.h"

#include <openssl/rand.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "base/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "storage/rocksdb_status.h"
#include "storage/schema.h"
#include "storage/verify.h"

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

std::string RandomLogId() {
  unsigned char buf[16];
  CARELOOP_CHECK(RAND_bytes(buf, sizeof buf) == 1);
  return HexEncode(absl::string_view(reinterpret_cast<char*>(buf), sizeof buf));
}

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream sos(&out);
  google::protobuf::io::CodedOutputStream cos(&sos);
  cos.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&cos);
  cos.Trim();
  return out;
}

// Perfect-subtree hashes (leaves included) for proofs: what the cache holds,
// the rest in one MultiGet (then cached).
class RocksNodeReader final : public merkle::NodeReader {
 public:
  RocksNodeReader(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, NodeCache* cache = nullptr)
      : db_(db), cf_(cf), cache_(cache) {}
  absl::StatusOr<std::vector<Hash>> ReadNodes(const std::vector<merkle::NodeId>& ids) override {
    std::vector<Hash> out(ids.size());
    std::vector<size_t> missing;
    if (cache_ != nullptr) {
      std::vector<std::optional<Hash>> cached = cache_->Find(ids);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (cached[i].has_value()) {
          out[i] = *cached[i];
        } else {
          missing.push_back(i);
        }
      }
      if (missing.empty()) return out;
    } else {
      for (size_t i = 0; i < ids.size(); ++i) missing.push_back(i);
    }
    std::vector<std::string> keys;
    keys.reserve(missing.size());
    for (size_t i : missing) keys.push_back(schema::MerkleKey(ids[i]));
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf_);
    std::vector<std::string> values;
    std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &values);
    std::vector<std::pair<merkle::NodeId, Hash>> read;
    for (size_t j = 0; j < missing.size(); ++j) {
      const merkle::NodeId& id = ids[missing[j]];
      if (!st[j].ok()) {
        return FromRocks(st[j], absl::StrCat("tree node level ", id.level, " index ", id.index));
      }
      if (values[j].size() != 32) {
        return absl::DataLossError(
            absl::StrCat("tree node level ", id.level, " index ", id.index, " is not 32 bytes"));
      }
      Hash& h = out[missing[j]];
      std::copy(values[j].begin(), values[j].end(), h.begin());
      read.emplace_back(id, h);
    }
    if (cache_ != nullptr) cache_->Add(read);
    return out;
  }

 private:
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  NodeCache* cache_;
};

// Every event is written with its payload and nothing removes one (there is
// no redaction yet): a payload that is not there is damage.
absl::Status MissingPayload(uint64_t seq) {
  return absl::DataLossError(absl::StrCat("the payload of event seq ", seq,
                                          " is missing from the ledger; run careloop ledger "
                                          "verify and restore from a backup"));
}

// Read back through an index, an event that is not the one the entry is for:
// the read fails instead of answering with another event.
absl::Status IndexDamage(absl::string_view index, uint64_t seq) {
  return absl::DataLossError(absl::StrCat(index, " of the ledger points at event seq ", seq,
                                          ", which it does not belong to; run careloop ledger "
                                          "verify and restore from a backup"));
}

// A payload read beside its header must be the one the header hashes: a
// flipped byte that got past RocksDB's checksums is caught here.
absl::Status AttachPayload(v1::Event* ev, std::string payload) {
  const v1::EventHeader& h = ev->header();
  if (payload.size() != h.payload_size() || AsStringView(Sha256(payload)) != h.payload_sha256()) {
    return absl::DataLossError(absl::StrCat("the payload of event seq ", h.seq(),
                                            " does not match its hash; run careloop ledger "
                                            "verify and restore from a backup"));
  }
  ev->set_payload(std::move(payload));
  return absl::OkStatus();
}

// The high-water mark a signed head stands for.
HighWater MarkOf(const v1::SignedHead& head) {
  HighWater mark{head.log_id(), head.tree_size(), {}};
  CARELOOP_CHECK(head.root_hash().size() == mark.root.size());
  std::copy(head.root_hash().begin(), head.root_hash().end(), mark.root.begin());
  return mark;
}

absl::StatusOr<v1::Event> DecodeEvent(uint64_t seq, std::string header_bytes) {
  v1::Event ev;
  if (!ev.mutable_header()->ParseFromString(header_bytes) || ev.header().seq() != seq) {
    return absl::DataLossError(absl::StrCat("event seq ", seq, ": stored header is damaged"));
  }
  ev.set_header_bytes(std::move(header_bytes));
  return ev;
}

}  // namespace

void NodeCache::AddLocked(uint64_t key, const Hash& hash) {
  if (current_.size() >= capacity_) {
    previous_ = std::move(current_);
    current_ = {};
  }
  current_.insert_or_assign(key, hash);
}

void NodeCache::Add(const std::vector<std::pair<merkle::NodeId, Hash>>& nodes) {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, hash] : nodes) AddLocked(Key(id), hash);
}

std::vector<std::optional<Hash>> NodeCache::Find(const std::vector<merkle::NodeId>& ids) const {
  std::vector<std::optional<Hash>> out(ids.size());
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint64_t k = Key(ids[i]);
    if (auto it = current_.find(k); it != current_.end()) {
      out[i] = it->second;
    } else if (auto old = previous_.find(k); old != previous_.end()) {
      out[i] = old->second;
    }
  }
  return out;
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
    meta.set_log_id(RandomLogId());
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
  if (syncer_.joinable()) syncer_.join();  // the last written rounds are synced and answered
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

struct LocalLedger::RoundResult {
  absl::Status status;
  v1::Commit commit;
  int dedup_of = -1;          // replays request dedup_of of this round
  bool dedup_stored = false;  // replays a stored commit
  uint64_t dedup_head_size = 0;
  bool record_key = false;  // store an idempotency record for it
};

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
    return unsynced_.size() + syncing_ < std::max<size_t>(1, options_.max_unsynced_rounds) ||
           syncer_stop_;
  };
  sync_mu_.Await(absl::Condition(&room));
  unsynced_.push_back(std::move(round));
}

void LocalLedger::SyncerLoop() {
  while (true) {
    std::deque<WrittenRound> group;
    {
      absl::MutexLock lock(&sync_mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !unsynced_.empty() || syncer_stop_;
      };
      sync_mu_.Await(absl::Condition(&ready));
      if (unsynced_.empty()) return;  // stopping, and every round is answered
      group.swap(unsynced_);
      syncing_ = group.size();
    }
    bool wrote = false;
    const WrittenRound* last = nullptr;
    for (const WrittenRound& r : group) {
      wrote |= r.wrote;
      if (r.new_head) last = &r;
    }
    // Once the writer stopped, nothing more is acknowledged: not even rounds
    // written before it stopped, whose sync might now succeed (on Linux a
    // retried fsync can succeed after the failed one dropped their pages).
    absl::Status synced = writer_status();
    if (synced.ok() && wrote && !options_.unsafe_no_sync) {
      synced = FromRocks(db_->SyncWAL(), "syncing the write-ahead log");
      if (synced.ok()) syncs_.fetch_add(1);
    }
    if (synced.ok() && last != nullptr && !options_.unsafe_no_sync) {
      synced = MarkHighWater(last->head);
    }
    std::vector<Completion> answers;
    if (!synced.ok()) {
      absl::Status stopped = StopWriter(synced);
      for (WrittenRound& r : group) {
        for (auto& [done, result] : r.answers) answers.emplace_back(std::move(done), stopped);
      }
    } else {
      // Durable: the group becomes visible, then its answers go out.
      uint64_t events = 0;
      for (const WrittenRound& r : group) events += r.events;
      {
        // Before the size: a reader that sees the size sees these too.
        absl::MutexLock lock(&tips_mu_);
        for (WrittenRound& r : group) {
          if (tips_.size() + r.tips.size() > kMaxTips) tips_.clear();  // bounded
          for (auto& [stream, tip] : r.tips) tips_[std::move(stream)] = tip;
        }
      }
      for (const WrittenRound& r : group) nodes_.Add(r.nodes);
      if (last != nullptr) {
        absl::MutexLock lock(&state_mu_);
        for (const WrittenRound& r : group) {
          if (!r.new_head) continue;
          recent_heads_.push_back(r.head);
          if (recent_heads_.size() > kRecentHeads) recent_heads_.pop_front();
        }
        head_ = last->head;
        size_.store(last->size, std::memory_order_release);
        ++published_generation_;
      }
      events_written_.fetch_add(events);
      for (WrittenRound& r : group) {
        for (auto& a : r.answers) answers.push_back(std::move(a));
      }
    }
    {
      absl::MutexLock lock(&sync_mu_);
      syncing_ = 0;  // the writer may go on while the callers are woken
    }
    for (auto& [done, result] : answers) done(std::move(result));
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

void LocalLedger::ProcessRound(std::vector<Pending>& round) {
  const absl::Time now = options_.clock->Now();
  const int64_t now_ns = absl::ToUnixNanos(now);
  rocksdb::WriteBatch wb;
  merkle::CompactRange tree = tree_;
  // Stream -> its newest version (and that event's seq) within the round.
  absl::flat_hash_map<std::string, StreamTip> tips;
  absl::flat_hash_map<std::string, uint64_t> cursor_overlay;
  absl::flat_hash_map<std::string, int> round_keys;
  std::vector<RoundResult> results(round.size());
  std::vector<std::pair<merkle::NodeId, Hash>> nodes;
  uint64_t events_in_round = 0;

  auto version_of = [&](const std::string& stream) -> absl::StatusOr<uint64_t> {
    if (auto it = tips.find(stream); it != tips.end()) return it->second.version;
    return ReadStreamVersion(stream);
  };
  auto cursor_of = [&](const std::string& name) -> absl::StatusOr<uint64_t> {
    if (auto it = cursor_overlay.find(name); it != cursor_overlay.end()) return it->second;
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kCursors), name, &v);
    if (s.IsNotFound()) return uint64_t{0};
    RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading cursor ", name)));
    return DecodeBE64(v);
  };

  for (size_t i = 0; i < round.size(); ++i) {
    Pending& p = round[i];
    RoundResult& r = results[i];
    const v1::AppendRequest& req = p.request;
    const std::string& key = req.idempotency_key();

    // 1. Idempotency: a retry gets the original commit, never a second copy.
    if (!key.empty()) {
      if (auto it = round_keys.find(key); it != round_keys.end()) {
        if (round[it->second].content_hash == p.content_hash) {
          r.dedup_of = it->second;
        } else {
          r.status = absl::AlreadyExistsError(
              absl::StrCat("idempotency key was already used for a different append (seq ",
                           results[it->second].commit.first_seq(), ")"));
        }
        continue;
      }
      std::string stored;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kIdempotency), key, &stored);
      if (!s.ok() && !s.IsNotFound()) {
        r.status = FromRocks(s, "reading an idempotency key");
        continue;
      }
      if (s.ok()) {
        v1::StoredIdempotency rec;
        if (!rec.ParseFromString(stored)) {
          r.status = absl::DataLossError("a stored idempotency record is damaged");
          continue;
        }
        absl::Time committed = absl::FromUnixNanos(rec.commit().commit_time_unix_nanos());
        if (committed + options_.idempotency_window >= now) {
          if (rec.content_sha256() == AsStringView(p.content_hash)) {
            r.commit = rec.commit();
            r.dedup_stored = true;
            r.dedup_head_size = rec.head_size();
          } else {
            r.status = absl::AlreadyExistsError(
                absl::StrCat("idempotency key was already used for a different append (seq ",
                             rec.commit().first_seq(), ")"));
          }
          continue;
        }
        // Expired: the key is free again.
      }
    }

    // 2. Preconditions and cursor expectations, against the round so far.
    absl::Status check;
    for (int j = 0; j < req.preconditions_size() && check.ok(); ++j) {
      const v1::Precondition& pc = req.preconditions(j);
      absl::StatusOr<uint64_t> v = version_of(pc.stream());
      if (!v.ok()) {
        check = v.status();
      } else if (pc.has_must_not_exist()) {
        if (*v != 0) {
          check = absl::FailedPreconditionError(
              absl::StrCat("precondition ", j, ": stream ", pc.stream(), " exists (version ", *v,
                           ") but the append requires that it does not"));
        }
      } else if (*v != pc.expected_version()) {
        check = absl::FailedPreconditionError(absl::StrCat("precondition ", j, ": stream ",
                                                           pc.stream(), " is at version ", *v,
                                                           ", expected ", pc.expected_version()));
      }
    }
    for (int j = 0; j < req.cursor_updates_size() && check.ok(); ++j) {
      const v1::CursorUpdate& cu = req.cursor_updates(j);
      if (!cu.has_expected_position()) continue;
      absl::StatusOr<uint64_t> pos = cursor_of(cu.name());
      if (!pos.ok()) {
        check = pos.status();
      } else if (*pos != cu.expected_position()) {
        check = absl::FailedPreconditionError(absl::StrCat("cursor ", cu.name(), " is at ", *pos,
                                                           ", expected ", cu.expected_position()));
      }
    }
    // Versions for this request's events, computed before anything changes.
    absl::flat_hash_map<std::string, uint64_t> local;
    std::vector<uint64_t> versions;
    for (int j = 0; j < req.events_size() && check.ok(); ++j) {
      const std::string& stream = req.events(j).stream();
      auto it = local.find(stream);
      uint64_t v = 0;
      if (it != local.end()) {
        v = it->second;
      } else {
        absl::StatusOr<uint64_t> cur = version_of(stream);
        if (!cur.ok()) {
          check = cur.status();
          break;
        }
        v = *cur;
      }
      local[stream] = v + 1;
      versions.push_back(v + 1);
    }
    if (!check.ok()) {
      r.status = check;
      continue;
    }

    // 3. Apply: seqs, headers, indexes, tree.
    v1::Commit& c = r.commit;
    c.set_commit_time_unix_nanos(now_ns);
    for (int j = 0; j < req.events_size(); ++j) {
      const v1::EventInput& e = req.events(j);
      const uint64_t seq = tree.size() + 1;
      v1::EventHeader h;
      h.set_seq(seq);
      h.set_stream(e.stream());
      h.set_stream_version(versions[j]);
      h.set_type(e.type());
      h.set_commit_time_unix_nanos(now_ns);
      *h.mutable_agencies() = e.agencies();
      h.set_subject(e.subject());
      h.set_payload_sha256(ToBytes(p.payload_hashes[j]));
      h.set_payload_size(e.payload().size());
      std::string header_bytes = h.SerializeAsString();
      const std::string seq_key = BE64(seq);
      wb.Put(cf(schema::kEvents), seq_key, header_bytes);
      wb.Put(cf(schema::kPayloads), seq_key, e.payload());
      wb.Put(cf(schema::kStreams), schema::PrefixedKey(e.stream(), versions[j]), seq_key);
      for (const std::string& a : e.agencies()) {
        wb.Put(cf(schema::kAgencyIndex), schema::PrefixedKey(a, seq), "");
      }
      if (!e.subject().empty()) {
        wb.Put(cf(schema::kSubjectIndex), schema::PrefixedKey(e.subject(), seq), "");
      }
      tree.Append(merkle::HashLeaf(header_bytes), &nodes);
      tips[e.stream()] = StreamTip{versions[j], seq};
      if (j == 0) c.set_first_seq(seq);
      c.set_last_seq(seq);
      c.add_stream_versions(versions[j]);
      ++events_in_round;
    }
    for (const v1::CursorUpdate& cu : req.cursor_updates()) {
      wb.Put(cf(schema::kCursors), cu.name(), BE64(cu.position()));
      cursor_overlay[cu.name()] = cu.position();
    }
    if (!key.empty()) {
      round_keys[key] = static_cast<int>(i);
      r.record_key = true;
    }
  }

  const uint64_t final_size = tree.size();
  for (size_t i = 0; i < round.size(); ++i) {
    if (!results[i].record_key) continue;
    v1::StoredIdempotency rec;
    rec.set_content_sha256(std::string(AsStringView(round[i].content_hash)));
    *rec.mutable_commit() = results[i].commit;
    rec.set_head_size(final_size);
    const std::string& key = round[i].request.idempotency_key();
    wb.Put(cf(schema::kIdempotency), key, rec.SerializeAsString());
    wb.Put(cf(schema::kIdemExpiry), schema::IdemExpiryKey(now_ns, key), "");
  }
  // Leaves too: verify then names exactly which seq's header was altered.
  for (const auto& [id, hash] : nodes)
    wb.Put(cf(schema::kMerkle), schema::MerkleKey(id), ToBytes(hash));

  v1::SignedHead head;
  const bool new_head = final_size != tree_.size();
  if (new_head) {
    absl::StatusOr<v1::SignedHead> signed_head = SignHead(final_size, tree.Root(), now);
    if (!signed_head.ok()) {
      // Without a signed head nothing of the round may be written.
      FailStop(signed_head.status(), &round);
      return;
    }
    head = *std::move(signed_head);
    wb.Put(cf(schema::kHeads), BE64(final_size), head.SerializeAsString());
  } else {
    head = last_head_;
  }
  WrittenRound written;
  if (wb.Count() > 0) {
    SweepIdempotency(now, &wb);
    // Not synced here: the syncer fsyncs the WAL for this and any other
    // written rounds, and only then are they visible and answered. Readers
    // never see past the published size, so unsynced rounds stay invisible.
    rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &wb);
    if (!s.ok()) {
      FailStop(FromRocks(s, "writing a commit round"), &round);
      return;
    }
    written.wrote = true;
  }
  tree_ = std::move(tree);
  if (stream_versions_.size() + tips.size() > 200'000) stream_versions_.clear();  // bounded cache
  for (const auto& [stream, tip] : tips) stream_versions_[stream] = tip.version;
  if (new_head) last_head_ = head;
  written.new_head = new_head;
  written.size = final_size;
  written.head = head;
  written.events = events_in_round;
  written.tips.assign(std::make_move_iterator(tips.begin()), std::make_move_iterator(tips.end()));
  written.nodes = std::move(nodes);
  rounds_.fetch_add(1);

  // Heads first, so that a replay within the round copies a complete commit.
  for (RoundResult& r : results) {
    if (r.status.ok() && r.dedup_of < 0 && !r.dedup_stored) *r.commit.mutable_head() = head;
  }
  std::vector<Completion> batch;
  batch.reserve(round.size());
  for (size_t i = 0; i < round.size(); ++i) {
    RoundResult& r = results[i];
    if (!r.status.ok()) {
      batch.emplace_back(std::move(round[i].done), r.status);
    } else if (r.dedup_of >= 0) {
      v1::Commit c = results[r.dedup_of].commit;
      c.set_deduplicated(true);
      batch.emplace_back(std::move(round[i].done), std::move(c));
    } else if (r.dedup_stored) {
      absl::StatusOr<v1::SignedHead> h = ReadHeadAt(r.dedup_head_size);
      if (!h.ok()) {
        batch.emplace_back(std::move(round[i].done), h.status());
        continue;
      }
      v1::Commit c = r.commit;
      *c.mutable_head() = *std::move(h);
      c.set_deduplicated(true);
      batch.emplace_back(std::move(round[i].done), std::move(c));
    } else {
      batch.emplace_back(std::move(round[i].done), r.commit);
    }
  }
  written.answers = std::move(batch);
  HandToSyncer(std::move(written));
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

absl::Status LocalLedger::WaitForSeq(uint64_t seq, absl::Duration timeout) {
  if (size() >= seq) return absl::OkStatus();
  absl::MutexLock lock(&state_mu_);
  auto ready = [this, seq]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return size_.load() >= seq || !writer_status_.ok() || notifier_stop_;
  };
  if (!state_mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("the ledger has not reached seq ", seq,
                                                    " (now ", size_.load(), ") within ",
                                                    absl::FormatDuration(timeout)));
  }
  if (size_.load() >= seq) return absl::OkStatus();
  if (!writer_status_.ok()) return writer_status_;
  return absl::UnavailableError("the ledger is shutting down");
}

uint32_t LocalLedger::ClampLimit(uint32_t limit) const {
  if (limit == 0 || limit > options_.limits.max_read_limit) return options_.limits.max_read_limit;
  return limit;
}

absl::StatusOr<std::vector<v1::Event>> LocalLedger::ReadEventsBySeq(
    const std::vector<uint64_t>& seqs, bool include_payloads) {
  std::vector<v1::Event> out;
  if (seqs.empty()) return out;
  std::vector<std::string> keys;
  keys.reserve(seqs.size());
  for (uint64_t s : seqs) keys.push_back(BE64(s));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf(schema::kEvents));
  std::vector<std::string> headers;
  std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &headers);
  std::vector<std::string> payloads;
  std::vector<rocksdb::Status> pst;
  if (include_payloads) {
    std::vector<rocksdb::ColumnFamilyHandle*> pcfs(keys.size(), cf(schema::kPayloads));
    pst = db_->MultiGet(rocksdb::ReadOptions(), pcfs, slices, &payloads);
  }
  out.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    RETURN_IF_ERROR(FromRocks(st[i], absl::StrCat("reading event seq ", seqs[i])));
    ASSIGN_OR_RETURN(v1::Event ev, DecodeEvent(seqs[i], std::move(headers[i])));
    if (include_payloads) {
      if (pst[i].IsNotFound()) return MissingPayload(seqs[i]);
      RETURN_IF_ERROR(FromRocks(pst[i], absl::StrCat("reading payload seq ", seqs[i])));
      RETURN_IF_ERROR(AttachPayload(&ev, std::move(payloads[i])));
    }
    out.push_back(std::move(ev));
  }
  return out;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::Read(const v1::ReadRequest& req) {
  RETURN_IF_ERROR(damage());
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint64_t from = std::max<uint64_t>(1, req.from_seq());
  const uint32_t limit = ClampLimit(req.limit());
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  if (from > size) return resp;
  const uint64_t last = std::min<uint64_t>(size, from + limit - 1);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kEvents)));
  std::unique_ptr<rocksdb::Iterator> pit;
  if (req.include_payloads()) {
    pit.reset(db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kPayloads)));
    pit->Seek(BE64(from));
  }
  uint64_t expect = from;
  for (it->Seek(BE64(from)); it->Valid() && expect <= last; it->Next(), ++expect) {
    uint64_t seq = DecodeBE64(AsView(it->key()));
    if (seq != expect) {
      return absl::DataLossError(absl::StrCat("event seq ", expect, " is missing from the ledger"));
    }
    ASSIGN_OR_RETURN(v1::Event ev, DecodeEvent(seq, it->value().ToString()));
    if (pit) {
      while (pit->Valid() && DecodeBE64(AsView(pit->key())) < seq) pit->Next();
      RETURN_IF_ERROR(FromRocks(pit->status(), "reading payloads"));
      if (!pit->Valid() || DecodeBE64(AsView(pit->key())) != seq) return MissingPayload(seq);
      RETURN_IF_ERROR(AttachPayload(&ev, pit->value().ToString()));
    }
    *resp.add_events() = std::move(ev);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading events"));
  if (expect <= last) {
    return absl::DataLossError(absl::StrCat("event seq ", expect, " is missing from the ledger"));
  }
  return resp;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::ReadStream(const v1::ReadStreamRequest& req) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(req.stream()));
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint32_t limit = ClampLimit(req.limit());
  std::vector<uint64_t> seqs;
  bool more = false;
  const uint64_t from = std::max<uint64_t>(1, req.from_version());
  ASSIGN_OR_RETURN(std::optional<uint64_t> known, KnownVersion(req.stream(), size));
  if (known.has_value()) {
    // The newest version is known: the versions asked for are point reads.
    if (from <= *known) {
      const uint64_t count = std::min<uint64_t>(limit, *known - from + 1);
      more = from + count - 1 < *known;
      std::vector<std::string> keys;
      keys.reserve(count);
      for (uint64_t v = from; v < from + count; ++v)
        keys.push_back(schema::PrefixedKey(req.stream(), v));
      std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
      std::vector<rocksdb::ColumnFamilyHandle*> cfs(keys.size(), cf(schema::kStreams));
      std::vector<std::string> values;
      std::vector<rocksdb::Status> st = db_->MultiGet(rocksdb::ReadOptions(), cfs, slices, &values);
      for (size_t i = 0; i < st.size(); ++i) {
        if (st[i].IsNotFound()) {
          return absl::DataLossError(absl::StrCat("stream ", req.stream(), " has no version ",
                                                  from + i, " below its newest (", *known, ")"));
        }
        RETURN_IF_ERROR(FromRocks(st[i], "reading a stream"));
        seqs.push_back(DecodeBE64(values[i]));
      }
    }
  } else {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kStreams)));
    const std::string prefix = req.stream() + std::string(1, '\0');
    for (it->Seek(schema::PrefixedKey(req.stream(), from));
         it->Valid() && it->key().starts_with(prefix); it->Next()) {
      uint64_t seq = DecodeBE64(AsView(it->value()));
      if (seq > size) break;  // committed but not yet published
      if (seqs.size() == limit) {
        more = true;
        break;
      }
      seqs.push_back(seq);
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading a stream"));
  }
  ASSIGN_OR_RETURN(std::vector<v1::Event> events, ReadEventsBySeq(seqs, req.include_payloads()));
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::EventHeader& h = events[i].header();
    if (h.stream() != req.stream() || h.stream_version() != from + i)
      return IndexDamage("the stream index", h.seq());
  }
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  resp.set_more(more);
  for (auto& e : events) *resp.add_events() = std::move(e);
  return resp;
}

absl::StatusOr<v1::ReadResponse> LocalLedger::ReadIndex(const v1::ReadIndexRequest& req) {
  RETURN_IF_ERROR(damage());
  int cf_index;
  std::string key;
  switch (req.key_case()) {
    case v1::ReadIndexRequest::kAgency:
      RETURN_IF_ERROR(ValidateAgencyId(req.agency()));
      cf_index = schema::kAgencyIndex;
      key = req.agency();
      break;
    case v1::ReadIndexRequest::kSubject:
      RETURN_IF_ERROR(ValidateToken(req.subject(), "subject id"));
      cf_index = schema::kSubjectIndex;
      key = req.subject();
      break;
    default:
      return absl::InvalidArgumentError("name an agency or a subject to read by");
  }
  if (req.min_seq() > 0) RETURN_IF_ERROR(WaitForSeq(req.min_seq(), options_.min_seq_wait));
  const uint64_t size = this->size();
  const uint32_t limit = ClampLimit(req.limit());
  std::vector<uint64_t> seqs;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(cf_index)));
  const std::string prefix = key + std::string(1, '\0');
  bool more = false;
  for (it->Seek(schema::PrefixedKey(key, req.after_seq() + 1));
       it->Valid() && it->key().starts_with(prefix); it->Next()) {
    uint64_t seq = DecodeBE64(AsView(it->key()).substr(prefix.size()));
    if (seq > size) break;
    if (seqs.size() == limit) {
      more = true;
      break;
    }
    seqs.push_back(seq);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading an index"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> events, ReadEventsBySeq(seqs, req.include_payloads()));
  for (const v1::Event& e : events) {
    const v1::EventHeader& h = e.header();
    const bool names = cf_index == schema::kSubjectIndex ? h.subject() == key
                                                         : absl::c_linear_search(h.agencies(), key);
    if (!names) return IndexDamage("an index", h.seq());
  }
  v1::ReadResponse resp;
  resp.set_tree_size(size);
  resp.set_more(more);
  for (auto& e : events) *resp.add_events() = std::move(e);
  return resp;
}

absl::StatusOr<uint64_t> LocalLedger::StreamVersion(absl::string_view stream) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(stream));
  const uint64_t size = this->size();
  ASSIGN_OR_RETURN(std::optional<uint64_t> known, KnownVersion(stream, size));
  if (known.has_value()) return *known;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kStreams)));
  const std::string prefix = std::string(stream) + std::string(1, '\0');
  // Walk back from the newest version past any that are not yet published.
  it->SeekForPrev(schema::PrefixedKey(stream, UINT64_MAX));
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    if (DecodeBE64(AsView(it->value())) <= size) {
      return DecodeBE64(AsView(it->key()).substr(prefix.size()));
    }
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading a stream version"));
  return uint64_t{0};
}

absl::StatusOr<v1::SignedHead> LocalLedger::ReadHeadAt(uint64_t size) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kHeads), BE64(size), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("no tree head was signed at size ", size,
                                            " (heads are signed once per commit round)"));
  }
  RETURN_IF_ERROR(FromRocks(s, "reading a tree head"));
  v1::SignedHead head;
  if (!head.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("the tree head at size ", size, " is damaged"));
  }
  return head;
}

absl::StatusOr<v1::SignedHead> LocalLedger::Head(uint64_t tree_size) {
  RETURN_IF_ERROR(damage());
  if (tree_size == 0) {
    absl::MutexLock lock(&state_mu_);
    return head_;
  }
  if (tree_size > size()) {
    return absl::OutOfRangeError(
        absl::StrCat("tree size ", tree_size, " is beyond the ledger (", size(), ")"));
  }
  return ReadHeadAt(tree_size);
}

absl::StatusOr<v1::InclusionProof> LocalLedger::ProveInclusion(uint64_t seq, uint64_t tree_size) {
  RETURN_IF_ERROR(damage());
  const uint64_t size = this->size();
  if (tree_size == 0) tree_size = size;
  if (tree_size > size) {
    return absl::OutOfRangeError(
        absl::StrCat("tree size ", tree_size, " is beyond the ledger (", size, ")"));
  }
  if (seq == 0 || seq > tree_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq ", seq, " is not in a tree of size ", tree_size));
  }
  RocksNodeReader reader(db_.get(), cf(schema::kMerkle), &nodes_);
  ASSIGN_OR_RETURN(std::vector<Hash> hashes,
                   merkle::HashRanges(reader, merkle::InclusionRanges(seq - 1, tree_size)));
  v1::InclusionProof proof;
  proof.set_leaf_index(seq - 1);
  proof.set_tree_size(tree_size);
  for (const Hash& h : hashes) proof.add_hashes(ToBytes(h));
  return proof;
}

absl::StatusOr<v1::ConsistencyProof> LocalLedger::ProveConsistency(uint64_t size1, uint64_t size2) {
  RETURN_IF_ERROR(damage());
  const uint64_t size = this->size();
  if (size2 == 0) size2 = size;
  if (size2 > size) {
    return absl::OutOfRangeError(
        absl::StrCat("tree size ", size2, " is beyond the ledger (", size, ")"));
  }
  if (size1 == 0 || size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a consistency proof needs 0 < size1 <= size2; got ", size1, " and ", size2));
  }
  v1::ConsistencyProof proof;
  proof.set_size1(size1);
  proof.set_size2(size2);
  if (size1 == size2) return proof;
  RocksNodeReader reader(db_.get(), cf(schema::kMerkle), &nodes_);
  ASSIGN_OR_RETURN(std::vector<Hash> hashes,
                   merkle::HashRanges(reader, merkle::ConsistencyRanges(size1, size2)));
  for (const Hash& h : hashes) proof.add_hashes(ToBytes(h));
  return proof;
}

absl::StatusOr<v1::Receipt> LocalLedger::GetReceipt(uint64_t seq) {
  RETURN_IF_ERROR(damage());
  const uint64_t size = this->size();
  if (seq == 0 || seq > size) {
    return absl::NotFoundError(
        absl::StrCat("no event with seq ", seq, " (the ledger has ", size, ")"));
  }
  v1::Receipt receipt;
  std::string header;
  RETURN_IF_ERROR(
      FromRocks(db_->Get(rocksdb::ReadOptions(), cf(schema::kEvents), BE64(seq), &header),
                absl::StrCat("reading event seq ", seq)));
  receipt.set_header_bytes(std::move(header));
  // The head of the event's round: the first head at or after its seq.
  {
    absl::MutexLock lock(&state_mu_);
    if (!recent_heads_.empty() && recent_heads_.front().tree_size() < seq) {
      auto h = std::lower_bound(
          recent_heads_.begin(), recent_heads_.end(), seq,
          [](const v1::SignedHead& head, uint64_t s) { return head.tree_size() < s; });
      if (h != recent_heads_.end()) *receipt.mutable_head() = *h;
    }
  }
  if (receipt.has_head()) {
    ASSIGN_OR_RETURN(*receipt.mutable_proof(), ProveInclusion(seq, receipt.head().tree_size()));
    return receipt;
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf(schema::kHeads)));
  it->Seek(BE64(seq));
  RETURN_IF_ERROR(FromRocks(it->status(), "reading tree heads"));
  if (!it->Valid()) return absl::DataLossError(absl::StrCat("no tree head covers seq ", seq));
  if (!receipt.mutable_head()->ParseFromString(it->value().ToString())) {
    return absl::DataLossError("a stored tree head is damaged");
  }
  ASSIGN_OR_RETURN(*receipt.mutable_proof(), ProveInclusion(seq, receipt.head().tree_size()));
  return receipt;
}

absl::StatusOr<std::optional<uint64_t>> LocalLedger::GetCursor(absl::string_view name) {
  RETURN_IF_ERROR(damage());
  RETURN_IF_ERROR(ValidateStreamName(name, "cursor"));
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(schema::kCursors), std::string(name), &v);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  RETURN_IF_ERROR(FromRocks(s, "reading a cursor"));
  return std::optional<uint64_t>(DecodeBE64(v));
}

namespace {
class LocalTailStream final : public TailStream {
 public:
  LocalTailStream(LocalLedger* ledger, uint64_t from, bool payloads)
      : ledger_(ledger), next_(std::max<uint64_t>(1, from)), payloads_(payloads) {}

  absl::StatusOr<std::vector<v1::Event>> Next(absl::Duration timeout) override {
    if (cancelled_.load()) return absl::CancelledError("tail cancelled");
    absl::Status waited = ledger_->WaitForSeqOrCancel(next_, timeout, &cancelled_);
    if (cancelled_.load()) return absl::CancelledError("tail cancelled");
    if (absl::IsDeadlineExceeded(waited)) return std::vector<v1::Event>();
    RETURN_IF_ERROR(waited);
    v1::ReadRequest req;
    req.set_from_seq(next_);
    req.set_include_payloads(payloads_);
    ASSIGN_OR_RETURN(v1::ReadResponse resp, ledger_->Read(req));
    std::vector<v1::Event> out(std::make_move_iterator(resp.mutable_events()->begin()),
                               std::make_move_iterator(resp.mutable_events()->end()));
    if (!out.empty()) next_ = out.back().header().seq() + 1;
    return out;
  }
  void Cancel() override { ledger_->CancelWaiters(&cancelled_); }

 private:
  LocalLedger* ledger_;
  uint64_t next_;
  bool payloads_;
  std::atomic<bool> cancelled_{false};
};
}  // namespace

absl::Status LocalLedger::WaitForSeqOrCancel(uint64_t seq, absl::Duration timeout,
                                             const std::atomic<bool>* cancelled) {
  absl::MutexLock lock(&state_mu_);
  auto ready = [this, seq, cancelled]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return size_.load() >= seq || !writer_status_.ok() || notifier_stop_ || cancelled->load();
  };
  if (!state_mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError("no new events");
  }
  if (size_.load() >= seq || cancelled->load()) return absl::OkStatus();
  if (!writer_status_.ok()) return writer_status_;
  return absl::UnavailableError("the ledger is shutting down");
}

void LocalLedger::CancelWaiters(std::atomic<bool>* flag) {
  // Setting the flag under the mutex makes waiting conditions re-evaluate.
  absl::MutexLock lock(&state_mu_);
  flag->store(true);
}

std::unique_ptr<TailStream> LocalLedger::Tail(uint64_t from_seq, bool include_payloads) {
  return std::make_unique<LocalTailStream>(this, from_seq, include_payloads);
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
  fs::copy(backup_dir, target_dir, fs::copy_options::recursive, ec);
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
    meta.set_log_id(RandomLogId());
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
