// careloop edge enroll: puts an agency into an edge's care, offline (the
// edge's careloopd stopped): its signing key into the edge's custody,
// sealed under the key-encryption key, and its first admin's staff account,
// whose one-time password and second factor are printed once to hand over.
// The admin then adds the agency's other staff in the console. The hub
// admin registers the agency (its public key, and the admin as an actor)
// with `careloop agency register --admin-user`.
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/status.h"
#include "services/edge/key_custody.h"
#include "services/edge/staff_accounts.h"
#include "services/edge/totp.h"
#include "services/names/names.h"
#include "services/trust/ed25519.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

struct EnrollOpts {
  std::string data_dir = "var";
  std::string agency, key_file, admin_user, admin_name;
};

// The edge's key-encryption key: the environment's, or a dev edge's file.
absl::StatusOr<std::string> Kek(const std::string& edge_dir) {
  absl::StatusOr<std::string> kek = edge::KekFromEnvironment();
  if (kek.ok() || !absl::IsNotFound(kek.status())) return kek;
  absl::StatusOr<std::string> dev = ReadFile(edge_dir + "/dev-kek");
  if (dev.ok()) return dev;
  return absl::FailedPreconditionError(
      absl::StrCat("set ", edge::kKekEnvironmentVariable, " to the edge's key-encryption key"));
}

absl::Status Enroll(const EnrollOpts& o, std::string* out) {
  const std::string edge_dir = o.data_dir + "/edge";
  ASSIGN_OR_RETURN(std::string kek, Kek(edge_dir));
  ASSIGN_OR_RETURN(std::string pem, ReadFile(o.key_file));
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key, trust::Ed25519PrivateKey::FromPem(pem));
  ASSIGN_OR_RETURN(edge::KeyCustody keys, edge::KeyCustody::Open(edge_dir + "/keys", kek));
  absl::Status imported = keys.Import(o.agency, key);
  if (absl::IsAlreadyExists(imported)) {
    // Enrolled before: the same key is fine (a second admin), another is not.
    ASSIGN_OR_RETURN(trust::Ed25519PrivateKey held, keys.Load(o.agency));
    if (held.public_key().raw() != key.public_key().raw()) {
      return absl::AlreadyExistsError(absl::StrCat("the edge already holds another key for ",
                                                   o.agency, "; rotate keys with the hub admin"));
    }
  } else if (!imported.ok()) {
    return imported;
  }
  absl::StatusOr<std::unique_ptr<edge::StaffAccounts>> accounts =
      edge::StaffAccounts::Open(edge_dir + "/staff", kek, SystemClock());
  if (!accounts.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the edge's staff store (stop the edge's careloopd first): ",
                     accounts.status().message()));
  }
  ASSIGN_OR_RETURN(
      edge::Enrollment e,
      (*accounts)->Add(edge::StaffMember{
          o.agency, o.admin_user, o.admin_name, {names::kAgencyAdminRole}, false, false}));
  *out = absl::StrCat("enrolled ", o.agency, " at the edge in ", o.data_dir, "\nhand these to ",
                      o.admin_user, " in person (shown once):\n",
                      "  one-time password: ", e.one_time_password, "\n",
                      "  second factor (authenticator app): ", edge::Base32Encode(e.totp_secret),
                      "\n  ", e.totp_uri, "\n");
  return absl::OkStatus();
}

}  // namespace

void AddEdgeCommands(CLI::App& app, Globals& g) {
  CLI::App* edge = app.add_subcommand("edge", "an agency edge's own data (offline)");
  edge->require_subcommand(1);
  auto o = std::make_shared<EnrollOpts>();
  CLI::App* enroll = edge->add_subcommand(
      "enroll", "an agency's key into the edge's custody and its first admin (edge stopped)");
  enroll->add_option("--data-dir", o->data_dir, "the edge's data dir")->capture_default_str();
  enroll->add_option("--agency", o->agency, "the agency id")->required();
  enroll->add_option("--key", o->key_file, "the agency's Ed25519 signing key (PEM)")->required();
  enroll->add_option("--admin-user", o->admin_user, "the admin's directory user id")->required();
  enroll->add_option("--admin-name", o->admin_name, "the admin's name")->required();
  enroll->callback([&g, o] {
    std::string out;
    const absl::Status s = Enroll(*o, &out);
    if (!s.ok()) {
      g.exit_code = Fail(s);
      return;
    }
    std::cout << out;
  });
}

}  // namespace careloop::cli
