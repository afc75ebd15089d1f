#include "storage/rocksdb_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace careloop::storage {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(context, ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsNoSpace())
    return absl::ResourceExhaustedError(absl::StrCat(msg, " (no space left on device)"));
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(msg);
  if (s.IsIOError()) {
    if (s.ToString().find("lock") != std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat(context,
                       ": the ledger directory is locked by another process (is another careloopd "
                       "running on this data dir?): ",
                       s.ToString()));
    }
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

}  // namespace careloop::storage
