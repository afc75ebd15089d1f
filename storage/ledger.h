// The ledger interface. Two implementations: LocalLedger (in-process, on
// RocksDB) and RemoteLedger (a gRPC client of LedgerService). Both pass the
// same conformance suite (tests/unit/ledger_conformance.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "careloop/v1/ledger.pb.h"

namespace careloop::storage {

using AppendCallback = std::function<void(absl::StatusOr<v1::Commit>)>;

// Events from a position on, in seq order, waking on commit.
class TailStream {
 public:
  virtual ~TailStream() = default;
  // Waits up to `timeout` for events at or after the stream's position and
  // returns them in order (empty on timeout; the position advances past
  // them). CANCELLED after Cancel(); any other error ends the stream.
  virtual absl::StatusOr<std::vector<v1::Event>> Next(absl::Duration timeout) = 0;
  // Wakes a pending Next. Thread-safe.
  virtual void Cancel() = 0;
};

class Ledger {
 public:
  virtual ~Ledger() = default;

  // Queues an append. `done` runs exactly once, on some thread, after the
  // commit is durable (fsync) or with an error, in which case nothing of the
  // request was written. A full queue answers RESOURCE_EXHAUSTED at once.
  virtual void AppendAsync(v1::AppendRequest request, AppendCallback done) = 0;
  // Blocking form of AppendAsync.
  absl::StatusOr<v1::Commit> Append(v1::AppendRequest request);

  virtual absl::StatusOr<v1::ReadResponse> Read(const v1::ReadRequest& req) = 0;
  virtual absl::StatusOr<v1::ReadResponse> ReadStream(const v1::ReadStreamRequest& req) = 0;
  virtual absl::StatusOr<v1::ReadResponse> ReadIndex(const v1::ReadIndexRequest& req) = 0;
  // The stream's current version (0 when it has no events).
  virtual absl::StatusOr<uint64_t> StreamVersion(absl::string_view stream) = 0;
  // tree_size 0: the latest head; otherwise the head stored for that size.
  virtual absl::StatusOr<v1::SignedHead> Head(uint64_t tree_size = 0) = 0;
  // tree_size 0: the current size.
  virtual absl::StatusOr<v1::InclusionProof> ProveInclusion(uint64_t seq, uint64_t tree_size) = 0;
  virtual absl::StatusOr<v1::ConsistencyProof> ProveConsistency(uint64_t size1, uint64_t size2) = 0;
  virtual absl::StatusOr<v1::Receipt> GetReceipt(uint64_t seq) = 0;
  // nullopt when the cursor was never set.
  virtual absl::StatusOr<std::optional<uint64_t>> GetCursor(absl::string_view name) = 0;
  virtual std::unique_ptr<TailStream> Tail(uint64_t from_seq, bool include_payloads) = 0;
  // A consistent copy of the ledger in `directory` (RocksDB Checkpoint), taken
  // while serving.
  virtual absl::StatusOr<v1::BackupResponse> Backup(const std::string& directory) = 0;
};

// Every event of one stream from `from_version` on, in version order, page
// by page: for readers that keep their place in a stream and read on.
absl::StatusOr<std::vector<v1::Event>> ReadStreamFrom(Ledger* ledger, absl::string_view stream,
                                                      uint64_t from_version,
                                                      bool include_payloads = true);

// Every event of one stream, in version order, page by page.
absl::StatusOr<std::vector<v1::Event>> ReadWholeStream(Ledger* ledger, absl::string_view stream,
                                                       bool include_payloads = true);

// The last event of a stream (empty when it has none), without reading the
// rest: for streams that only ever matter by their newest event.
absl::StatusOr<std::vector<v1::Event>> ReadLastEvent(Ledger* ledger, absl::string_view stream);

}  // namespace careloop::storage
