// The edge's part of a hub backup (DESIGN.md, "The agency edge"): staff
// accounts, sessions and second factors (a consistent RocksDB checkpoint of
// the staff store, taken while serving) and the sealed agency keys, written
// under the ledger backup's directory as `edge/`, and put back by
// `careloop ledger restore`. Keys and TOTP seeds stay sealed under the
// key-encryption key, which is not in the backup (in dev mode, where the KEK
// is a file in the data dir, it is copied with the rest). The dev seed's
// token is not copied: careloopd writes a new one at each start.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/edge/staff_accounts.h"

namespace careloop::edge {

// The name of the edge's part inside a ledger backup directory.
inline constexpr char kEdgeBackupDir[] = "edge";

// Writes the edge whose data dir is `edge_dir` into `to` (which must not
// exist), the staff store through `accounts`, which must be open on
// `edge_dir`/staff.
absl::Status BackupEdge(const std::string& edge_dir, StaffAccounts* accounts,
                        const std::string& to);

// Copies an edge backup `from` into `edge_dir`, which must be absent or
// empty (a restore never mixes two edges' accounts).
absl::Status RestoreEdge(const std::string& from, const std::string& edge_dir);

}  // namespace careloop::edge
