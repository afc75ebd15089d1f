// Offline verification of a ledger directory: re-hashes every event and
// payload, recomputes the Merkle tree, compares every stored tree node, checks
// every stored head's root and signature, cross-checks every index column
// family with the events (storage/verify_indexes.h), checks the log against
// its durable high-water mark, and names the first bad seq.
// Works on a copy or on a live data dir (read-only open), and, as the
// ledger's background scrub, on a snapshot of the open database.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "storage/checkpoint.h"
#include "storage/high_water.h"

namespace careloop::storage {

struct VerifyReport {
  bool ok = true;
  uint64_t events = 0;
  uint64_t heads = 0;
  uint64_t payload_bytes = 0;
  // The acknowledged size the durable high-water mark records; none in a
  // backup, which restore gives a new mark.
  std::optional<uint64_t> high_water_size;
  std::string log_id;
  std::string root_hex;
  bool used_stored_key = false;    // no key was pinned; the data dir's own was used
  bool signatures_checked = true;  // false: a scrub given no key checked roots only
  // The first problem: the seq it concerns (0 when none applies) and what.
  uint64_t first_bad_seq = 0;
  std::string problem;
};

using VerifierFactory =
    std::function<absl::StatusOr<std::unique_ptr<NoteVerifier>>(absl::string_view vkey)>;

// `pinned` may be null: then the verifier key recorded in the data dir is used
// (made by `make_verifier`), and the report says so, since whoever could
// rewrite the data dir could rewrite that key too.
absl::StatusOr<VerifyReport> VerifyLedgerDir(const std::string& dir, const NoteVerifier* pinned,
                                             const VerifierFactory& make_verifier);

// What a verification of an open database reads.
struct VerifyScope {
  rocksdb::DB* db = nullptr;
  const std::vector<rocksdb::ColumnFamilyHandle*>* cfs = nullptr;  // schema::Cf order
  const rocksdb::Snapshot* snapshot = nullptr;                     // null: the database as it is
  // Checks each head's signature; null: only their sizes, roots and log ids.
  const NoteVerifier* key = nullptr;
  // The durable high-water mark (or, for a live ledger, the published head):
  // the log must hold it. An error is itself damage (no position).
  absl::StatusOr<std::optional<HighWater>> mark = std::optional<HighWater>();
  // The payload and tree passes on two threads; false: one after the other
  // on the caller's (a scrub, which must leave the cores to the hub).
  bool parallel = true;
  // Set (by another thread) to abandon the passes: CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
};

// DATA_LOSS when the ledger's metadata cannot be read; otherwise the report
// (ok, or the first problem found).
absl::StatusOr<VerifyReport> VerifyOpenLedger(const VerifyScope& scope);

}  // namespace careloop::storage
