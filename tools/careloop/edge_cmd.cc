// careloop edge enroll: puts an agency into an edge's care, offline (the
// edge's careloopd stopped): its signing key into the edge's custody,
// sealed under the key-encryption key, and its first admin's staff account,
// whose one-time password and second factor are printed once to hand over.
// The admin then adds the agency's other staff in the console. The hub
// admin registers the agency (its public key, and the admin as an actor)
// with `careloop agency register --admin-user`.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/status.h"
#include "services/edge/key_custody.h"
#include "services/edge/smart_auth.h"
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

struct FhirClientOpts {
  std::string data_dir = "var";
  std::string client_id, agency, jwks_file;
  std::string scope =
      "system/Task.cruds system/ServiceRequest.crs system/Patient.r system/Consent.crs "
      "system/Organization.rs system/HealthcareService.rs";
};

// A system (an EHR, a case-management tool) that may ask the edge's FHIR
// API for tokens as `agency`: its public keys, checked, and its scopes.
// The edge reads registrations at each token request, running or not.
absl::Status AddFhirClient(const FhirClientOpts& o, std::string* out) {
  const std::string dir = o.data_dir + "/edge/fhir-clients";
  ASSIGN_OR_RETURN(std::string jwks, ReadFile(o.jwks_file));
  if (std::filesystem::exists(o.data_dir + "/edge/keys")) {
    // The edge must hold the agency's key to sign what the system sends.
    if (absl::StatusOr<std::string> kek = Kek(o.data_dir + "/edge"); kek.ok()) {
      ASSIGN_OR_RETURN(edge::KeyCustody keys,
                       edge::KeyCustody::Open(o.data_dir + "/edge/keys", *kek));
      ASSIGN_OR_RETURN(std::vector<std::string> served, keys.Agencies());
      if (std::find(served.begin(), served.end(), o.agency) == served.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the edge does not hold ", o.agency, "'s key (careloop edge enroll)"));
      }
    }
  }
  RETURN_IF_ERROR(
      edge::RegisterFhirClient(dir, edge::FhirClient{o.client_id, o.agency, jwks, o.scope}));
  *out = absl::StrCat("registered FHIR client ", o.client_id, " for ", o.agency, "\n");
  return absl::OkStatus();
}

void AddFhirClientCommands(CLI::App* edge, Globals& g) {
  CLI::App* fc = edge->add_subcommand("fhir-client", "systems that use the FHIR API");
  fc->require_subcommand(1);
  auto o = std::make_shared<FhirClientOpts>();
  CLI::App* add = fc->add_subcommand(
      "add", "register a system (SMART Backend Services: its JWKS of ES384/RS384 public keys)");
  add->add_option("--data-dir", o->data_dir, "the edge's data dir")->capture_default_str();
  add->add_option("--client-id", o->client_id, "the client id it authenticates as")->required();
  add->add_option("--agency", o->agency, "the agency it acts for")->required();
  add->add_option("--jwks", o->jwks_file, "its public keys (a JWKS file)")->required();
  add->add_option("--scope", o->scope, "the system scopes it may be granted")
      ->capture_default_str();
  add->callback([&g, o] {
    std::string out;
    if (const absl::Status s = AddFhirClient(*o, &out); !s.ok()) {
      g.exit_code = Fail(s);
      return;
    }
    std::cout << out;
  });
  CLI::App* remove = fc->add_subcommand("remove",
                                        "unregister a system (its tokens end within "
                                        "their lifetime of five minutes)");
  remove->add_option("--data-dir", o->data_dir, "the edge's data dir")->capture_default_str();
  remove->add_option("--client-id", o->client_id, "the client id")->required();
  remove->callback([&g, o] {
    if (const absl::Status s =
            edge::RemoveFhirClient(o->data_dir + "/edge/fhir-clients", o->client_id);
        !s.ok()) {
      g.exit_code = Fail(s);
      return;
    }
    std::cout << "removed FHIR client " << o->client_id << "\n";
  });
  CLI::App* list = fc->add_subcommand("list", "the registered systems");
  list->add_option("--data-dir", o->data_dir, "the edge's data dir")->capture_default_str();
  list->callback([&g, o] {
    absl::StatusOr<std::vector<edge::FhirClient>> clients =
        edge::ListFhirClients(o->data_dir + "/edge/fhir-clients");
    if (!clients.ok()) {
      g.exit_code = Fail(clients.status());
      return;
    }
    for (const edge::FhirClient& c : *clients)
      std::cout << c.client_id << "\t" << c.agency_id << "\t" << c.scope << "\n";
  });
}

}  // namespace

void AddEdgeCommands(CLI::App& app, Globals& g) {
  CLI::App* edge = app.add_subcommand("edge", "an agency edge's own data");
  edge->require_subcommand(1);
  AddFhirClientCommands(edge, g);
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
