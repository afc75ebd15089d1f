// The in-process ledger on RocksDB.
//
// One writer thread drains a bounded queue in rounds (group commit): it
// evaluates every request's idempotency key and preconditions in queue order,
// assigns seqs, extends the Merkle tree, signs the new tree head and writes
// the whole round in one WriteBatch. A syncer thread then fsyncs the WAL for
// every round written so far; a marker thread writes the durable high-water
// mark for what the syncer made durable, publishes the newest head, and only
// then answers those rounds' requests. Meanwhile the writer builds the next
// round and the syncer syncs it, so the two fsyncs overlap. Readers never see
// past the published size. A failed write or sync stops the writer
// for good (fail-stop, UNAVAILABLE): nothing that may be lost is ever
// acknowledged. Readers never block the writer.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "storage/checkpoint.h"
#include "storage/high_water.h"
#include "storage/ledger.h"
#include "storage/ledger_db.h"
#include "storage/merkle.h"
#include "storage/node_store.h"
#include "storage/validate.h"
#include "storage/verify.h"

namespace careloop::storage {

struct LedgerOptions {
  std::string dir;                          // the ledger's RocksDB directory
  std::string hub_name = "careloop.dev";    // origin prefix and key name
  const HeadSigner* signer = nullptr;       // the hub's log key (required)
  Clock* clock = nullptr;                   // default: the system clock
  std::shared_ptr<rocksdb::FileSystem> fs;  // default: the real file system
  absl::Duration idempotency_window = absl::Hours(24 * 7);
  LedgerLimits limits;
  size_t queue_capacity = 10000;      // queued appends; full -> RESOURCE_EXHAUSTED
  size_t max_round_events = 4096;     // events per commit round
  size_t max_round_bytes = 32 << 20;  // payload bytes per commit round
  // Rounds written but not yet synced: the writer builds the next round while
  // the syncer fsyncs the previous ones (one fsync may cover several).
  size_t max_unsynced_rounds = 2;
  absl::Duration min_seq_wait = absl::Seconds(10);  // how long a read waits for min_seq
  size_t block_cache_bytes = 64 << 20;
  // The background scrub: every scrub_interval (zero: never), the checks of
  // `careloop ledger verify` on a snapshot of the open ledger, on one core.
  // Damage found fails the ledger stop (see LocalLedger::Scrub).
  absl::Duration scrub_interval = absl::ZeroDuration();
  // The key the scrub checks head signatures with; null: sizes, roots and
  // log ids only.
  const NoteVerifier* verifier = nullptr;
  // Only for the crash test's negative control: acknowledge without fsync.
  bool unsafe_no_sync = false;
  // Test hook: runs on the writer thread when it wakes for a round, before it
  // takes the queued requests, so a test can queue several into one round.
  std::function<void()> test_before_round;
  // Test hook: runs on the scrub thread after each background scrub.
  std::function<void(const absl::StatusOr<VerifyReport>&)> test_after_scrub;
};

class LocalLedger final : public Ledger {
 public:
  // Opens (or creates) the ledger in options.dir. Refuses a directory written
  // by another format version, one that is not a ledger, or one locked by
  // another process.
  static absl::StatusOr<std::unique_ptr<LocalLedger>> Open(LedgerOptions options);
  ~LocalLedger() override;

  void AppendAsync(v1::AppendRequest request, AppendCallback done) override;
  absl::StatusOr<v1::ReadResponse> Read(const v1::ReadRequest& req) override;
  absl::StatusOr<v1::ReadResponse> ReadStream(const v1::ReadStreamRequest& req) override;
  absl::StatusOr<v1::ReadResponse> ReadIndex(const v1::ReadIndexRequest& req) override;
  absl::StatusOr<uint64_t> StreamVersion(absl::string_view stream) override;
  absl::StatusOr<v1::SignedHead> Head(uint64_t tree_size = 0) override;
  absl::StatusOr<v1::InclusionProof> ProveInclusion(uint64_t seq, uint64_t tree_size) override;
  absl::StatusOr<v1::ConsistencyProof> ProveConsistency(uint64_t size1, uint64_t size2) override;
  absl::StatusOr<v1::Receipt> GetReceipt(uint64_t seq) override;
  absl::StatusOr<std::optional<uint64_t>> GetCursor(absl::string_view name) override;
  std::unique_ptr<TailStream> Tail(uint64_t from_seq, bool include_payloads) override;
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& directory) override;

  // Stops taking appends, lets the writer finish everything queued, stops the
  // threads and closes the database. Idempotent; the destructor calls it.
  absl::Status Close();

  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  const std::string& log_id() const { return log_id_; }
  // OK while the writer runs; the fail-stop cause after a failed write.
  absl::Status writer_status() const;
  // Verifies a snapshot of the ledger now, as the background scrub does. On
  // damage (the report not ok, or the metadata unreadable) the ledger fails
  // stop: the writer stops (appends answer DATA_LOSS) and every read answers
  // DATA_LOSS, since an index or tree node that is wrong would make answers
  // short or false. Restart runs the open checks again; `careloop ledger
  // verify` names the damage; a backup restores.
  absl::StatusOr<VerifyReport> Scrub();
  // OK, or the DATA_LOSS every read answers once damage was found.
  absl::Status damage() const;
  // Waits until the ledger has at least `seq` events.
  absl::Status WaitForSeq(uint64_t seq, absl::Duration timeout);
  // Like WaitForSeq, but also returns (OK) once *cancelled is set through
  // CancelWaiters. DEADLINE_EXCEEDED on timeout.
  absl::Status WaitForSeqOrCancel(uint64_t seq, absl::Duration timeout,
                                  const std::atomic<bool>* cancelled);
  void CancelWaiters(std::atomic<bool>* flag);

  // Called (on the ledger's notifier thread, never the writer) after each
  // commit round with the new size. Must not block.
  using CommitListener = std::function<void(uint64_t size)>;
  uint64_t AddCommitListener(CommitListener listener);
  void RemoveCommitListener(uint64_t id);

  // Counters for benchmarks: commit rounds, WAL fsyncs, events written.
  uint64_t rounds() const { return rounds_.load(); }
  uint64_t syncs() const { return syncs_.load(); }
  uint64_t events_written() const { return events_written_.load(); }

 private:
  struct Pending {
    v1::AppendRequest request;
    Hash content_hash;
    std::vector<Hash> payload_hashes;  // computed by the caller, off the writer thread
    AppendCallback done;
  };
  using Completion = std::pair<AppendCallback, absl::StatusOr<v1::Commit>>;
  struct StreamTip {
    uint64_t version = 0;
    uint64_t seq = 0;  // the seq of that version's event
  };
  // A round the writer has written (not yet synced, not yet visible).
  struct WrittenRound {
    bool wrote = false;  // it put something in the WAL
    bool new_head = false;
    uint64_t size = 0;
    v1::SignedHead head;
    uint64_t events = 0;
    std::vector<Completion> answers;
    std::vector<std::pair<std::string, StreamTip>> tips;  // newest version per stream written
    std::vector<std::pair<merkle::NodeId, Hash>> nodes;   // tree nodes written
  };
  struct RoundResult;
  class Round;  // one commit round being built (local_ledger_round.cc)
  // Rounds the syncer made durable in the WAL (or failed to), on their way
  // to the marker, which writes the high-water mark, publishes and answers.
  struct SyncedGroup {
    std::deque<WrittenRound> rounds;
    absl::Status synced;
  };

  explicit LocalLedger(LedgerOptions options);
  absl::Status OpenDb();
  absl::Status LoadState();
  // Refuses a ledger behind its durable high-water mark, or with another
  // root at the mark's size; opens (or, for a data dir that has none yet,
  // creates) the mark for the syncer. `meta` records that the mark exists.
  absl::Status CheckHighWater(v1::LedgerMeta* meta, uint64_t size, const Hash& root);
  // The mark for a synced group whose newest head is `head`, before any of
  // its answers.
  absl::Status MarkHighWater(const v1::SignedHead& head);
  // The high-water mark a signed head stands for.
  static HighWater MarkOf(const v1::SignedHead& head);
  rocksdb::FileSystem* file_system() const;
  void WriterLoop();
  void NotifierLoop();
  void SyncerLoop();
  void MarkerLoop();
  // Makes durable, marked rounds visible (`last`: the newest with a head)
  // and collects their answers.
  void Publish(std::vector<WrittenRound>& rounds, const WrittenRound* last,
               std::vector<Completion>* answers);
  // Stops the writer for good; returns the status every later append gets.
  absl::Status StopWriter(const absl::Status& cause);
  // Builds, checks, writes and hands on one commit round.
  void ProcessRound(std::vector<Pending>& requests);
  void ScrubLoop();
  // Records damage found: reads answer DATA_LOSS, the writer stops.
  void Damaged(const absl::Status& cause);
  void FailStop(const absl::Status& cause, std::vector<Pending>* round);
  void HandToSyncer(WrittenRound round);
  absl::StatusOr<uint64_t> ReadStreamVersion(const std::string& stream);
  // A stream's newest version at or below `size` when it is known without an
  // iterator: from the published tips, or 0 when version 1 does not exist at
  // or below `size` (one point read, which the bloom filters answer).
  absl::StatusOr<std::optional<uint64_t>> KnownVersion(absl::string_view stream, uint64_t size);
  // The seq of version 1 of a stream (written, maybe not published), if any.
  absl::StatusOr<std::optional<uint64_t>> FirstSeq(absl::string_view stream);
  // The events at `seqs`, in order, as many as fit one page (then `cut`).
  absl::StatusOr<std::vector<v1::Event>> ReadEventsBySeq(const std::vector<uint64_t>& seqs,
                                                         bool include_payloads, bool* cut);
  absl::StatusOr<v1::SignedHead> ReadHeadAt(uint64_t size);
  absl::StatusOr<v1::SignedHead> SignHead(uint64_t size, const Hash& root, absl::Time time);
  void SweepIdempotency(absl::Time now, rocksdb::WriteBatch* batch);
  rocksdb::ColumnFamilyHandle* cf(int i) const { return handles_[i]; }
  uint32_t ClampLimit(uint32_t limit) const;

  LedgerOptions options_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::string log_id_;
  std::string origin_;
  std::unique_ptr<HighWaterFile> high_water_;  // the syncer's, after LoadState

  // Queue between request threads and the writer.
  mutable absl::Mutex queue_mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool closing_ ABSL_GUARDED_BY(queue_mu_) = false;

  // Writer-thread state (no lock: only the writer touches it).
  merkle::CompactRange tree_;
  v1::SignedHead last_head_;  // the newest head written (maybe not yet synced)
  absl::flat_hash_map<std::string, uint64_t> stream_versions_;
  absl::Time last_sweep_ = absl::InfinitePast();

  // Published state.
  mutable absl::Mutex state_mu_;
  v1::SignedHead head_ ABSL_GUARDED_BY(state_mu_);
  absl::Status writer_status_ ABSL_GUARDED_BY(state_mu_);
  absl::Status damage_ ABSL_GUARDED_BY(state_mu_);
  std::atomic<bool> damaged_{false};  // lock-free check on the read path
  uint64_t published_generation_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool notifier_stop_ ABSL_GUARDED_BY(state_mu_) = false;
  std::atomic<uint64_t> size_{0};
  std::atomic<bool> writer_stopped_{false};  // lock-free check on the append path
  std::atomic<int> listener_count_{0};       // the notifier sleeps while nobody listens
  std::atomic<uint64_t> rounds_{0};
  std::atomic<uint64_t> events_written_{0};

  absl::Mutex listeners_mu_;
  uint64_t next_listener_id_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<CommitListener>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);

  // The newest published version of recently written streams, filled by the
  // syncer before it publishes a size; readers ignore entries past the size
  // they read. Most version lookups (every append's preconditions, the
  // services' planning reads) are answered here instead of by an iterator.
  mutable absl::Mutex tips_mu_;
  absl::flat_hash_map<std::string, StreamTip> tips_ ABSL_GUARDED_BY(tips_mu_);
  // Tree nodes for proofs (the syncer adds each round's before publishing).
  NodeCache nodes_{1 << 17};
  // The heads of the latest rounds, oldest first, with none missing between:
  // a receipt finds its round's head here instead of by a seek.
  std::deque<v1::SignedHead> recent_heads_ ABSL_GUARDED_BY(state_mu_);

  absl::Mutex sync_mu_;
  std::deque<WrittenRound> unsynced_ ABSL_GUARDED_BY(sync_mu_);
  // Rounds the syncer and the marker hold now (written, not yet answered).
  size_t in_flight_ ABSL_GUARDED_BY(sync_mu_) = 0;
  bool syncer_stop_ ABSL_GUARDED_BY(sync_mu_) = false;
  std::atomic<uint64_t> syncs_{0};

  std::thread writer_;
  std::thread notifier_;
  std::thread syncer_;
  absl::Mutex mark_mu_;
  std::deque<SyncedGroup> synced_ ABSL_GUARDED_BY(mark_mu_);
  bool marker_stop_ ABSL_GUARDED_BY(mark_mu_) = false;
  std::thread marker_;
  std::thread scrubber_;
  absl::Mutex scrub_mu_;
  bool scrub_stop_ ABSL_GUARDED_BY(scrub_mu_) = false;
  std::atomic<bool> scrub_cancel_{false};
  bool closed_ = false;
  absl::Mutex close_mu_;
};

// Copies a backup made by Backup() into `target_dir` (which must not exist or
// be empty) and gives it a new log id, so that monitors see the restore. What
// a restore loses: every event committed after the backup was taken.
struct RestoreResult {
  std::string new_log_id;
  std::string previous_log_id;
  uint64_t tree_size = 0;
};
absl::StatusOr<RestoreResult> RestoreLedger(const std::string& backup_dir,
                                            const std::string& target_dir);

}  // namespace careloop::storage
