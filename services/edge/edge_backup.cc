#include "services/edge/edge_backup.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"

namespace careloop::edge {
namespace {

namespace fs = std::filesystem;

constexpr char kStaffDir[] = "staff";
constexpr char kSeedToken[] = "dev-seed-token";

absl::Status Failed(const char* what, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat(what, ": ", ec.message()));
}

}  // namespace

absl::Status BackupEdge(const std::string& edge_dir, StaffAccounts* accounts,
                        const std::string& to) {
  CARELOOP_CHECK(accounts != nullptr);
  std::error_code ec;
  if (fs::exists(to, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("edge backup directory ", to, " already exists"));
  }
  fs::create_directories(to, ec);
  if (ec) return Failed("making the edge backup directory", ec);
  fs::permissions(to, fs::perms::owner_all, fs::perm_options::replace, ec);
  for (const fs::directory_entry& e : fs::directory_iterator(edge_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kStaffDir || name == kSeedToken) continue;
    fs::copy(e.path(), fs::path(to) / name, fs::copy_options::recursive, ec);
    if (ec) return Failed("copying the edge's files", ec);
  }
  if (ec) return Failed("listing the edge's files", ec);
  RETURN_IF_ERROR(accounts->Backup((fs::path(to) / kStaffDir).string()));
  log::Info("edge.backup", {{"dir", to}});
  return absl::OkStatus();
}

absl::Status RestoreEdge(const std::string& from, const std::string& edge_dir) {
  std::error_code ec;
  if (!fs::is_directory(fs::path(from) / kStaffDir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, " is not an edge backup (it has no ", kStaffDir, "/)"));
  }
  if (fs::exists(edge_dir, ec) && !fs::is_empty(edge_dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "restore target ", edge_dir, " is not empty; move it away first (it may be evidence)"));
  }
  fs::create_directories(edge_dir, ec);
  if (ec) return Failed("making the edge's data dir", ec);
  fs::permissions(edge_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  fs::copy(from, edge_dir, fs::copy_options::recursive, ec);
  if (ec) return Failed("copying the edge backup", ec);
  return absl::OkStatus();
}

}  // namespace careloop::edge
