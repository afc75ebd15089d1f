// The ledger's on-disk layout, declared in one place.
//
// Column families and their keys (BE64 = 8-byte big-endian, so that keys sort
// numerically):
//   default       "meta" -> LedgerMeta
//   events        BE64(seq) -> EventHeader bytes (hashed into the leaf as-is)
//   payloads      BE64(seq) -> payload bytes (always present: a missing one is damage)
//   streams       stream 0x00 BE64(version) -> BE64(seq)
//   agency_index  agency 0x00 BE64(seq) -> ""
//   subject_index subject 0x00 BE64(seq) -> ""
//   merkle        level(1 byte) BE64(index) -> 32-byte perfect-subtree hash (leaves too)
//   heads         BE64(tree size) -> SignedHead (one per commit round)
//   idempotency   key -> StoredIdempotency
//   idem_expiry   BE64(commit time µs) key -> "" (sweeps expired keys in order)
//   cursors       name -> BE64(position)
#pragma once

#include <rocksdb/slice.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "storage/merkle.h"

namespace careloop::storage::schema {

inline constexpr uint32_t kFormatVersion = 1;
// A file in the ledger directory naming the format, readable without RocksDB.
inline constexpr char kFormatFile[] = "CARELOOP_FORMAT";
inline constexpr char kFormatPrefix[] = "careloop-ledger-format ";
// The durable high-water mark (storage/high_water.h), beside the database.
inline constexpr char kHighWaterFile[] = "CARELOOP_HIGH_WATER";
inline constexpr char kMetaKey[] = "meta";

enum Cf : int {
  kDefault = 0,
  kEvents,
  kPayloads,
  kStreams,
  kAgencyIndex,
  kSubjectIndex,
  kMerkle,
  kHeads,
  kIdempotency,
  kIdemExpiry,
  kCursors,
  kNumCfs
};

inline const std::vector<std::string>& CfNames() {
  static const std::vector<std::string> names = {
      "default", "events", "payloads",    "streams",     "agency_index", "subject_index",
      "merkle",  "heads",  "idempotency", "idem_expiry", "cursors"};
  return names;
}

inline absl::string_view AsView(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

inline std::string BE64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return s;
}

inline uint64_t DecodeBE64(absl::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

// "<prefix>\0<BE64(n)>": the stream and index keys.
inline std::string PrefixedKey(absl::string_view prefix, uint64_t n) {
  std::string k(prefix);
  k.push_back('\0');
  k.append(BE64(n));
  return k;
}

// idem_expiry: the record's commit time in µs, then its key, so that a sweep
// meets the oldest first.
inline std::string IdemExpiryKey(int64_t commit_time_unix_nanos, absl::string_view key) {
  std::string k = BE64(static_cast<uint64_t>(commit_time_unix_nanos / 1000));
  k.append(key.data(), key.size());
  return k;
}

inline std::string MerkleKey(const merkle::NodeId& id) {
  std::string k(1, static_cast<char>(id.level));
  k.append(BE64(id.index));
  return k;
}

}  // namespace careloop::storage::schema
