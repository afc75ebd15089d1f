// careloop agency register|update|suspend|activate|show|search,
// careloop actor add|remove, careloop keys add|revoke.
// Changes are signed envelopes: --sign-key and who signs (--as, --user,
// --role, --key-id); the defaults sign as the hub admin.
#include <openssl/rand.h>

#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/sha256.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "services/trust/envelope.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

std::unique_ptr<v1::DirectoryService::Stub> Stub(const Globals& g) {
  return v1::DirectoryService::NewStub(Connect(g));
}

struct ProfileFlags {
  std::string name, kind, address_postal_code, phone, email;
  std::vector<std::string> services, postal_codes, counties, languages, roles;
  bool confidential = false;
};

void AddProfileFlags(CLI::App* cmd, ProfileFlags& p) {
  cmd->add_option("--name", p.name, "display name")->required();
  cmd->add_option("--kind", p.kind, "hospital, community-agency, government-office, payer, other")
      ->required();
  cmd->add_option("--service", p.services,
                  "service code offered (repeatable), e.g. food-insecurity");
  cmd->add_option("--area-postal-code", p.postal_codes, "postal code served (repeatable)");
  cmd->add_option("--area-county", p.counties, "county served (repeatable)");
  cmd->add_option("--language", p.languages, "language spoken (repeatable)");
  cmd->add_option("--agency-role", p.roles,
                  "sender, receiver, compliance, emergency, admin (repeatable)");
  cmd->add_option("--postal-code", p.address_postal_code, "the agency's own postal code");
  cmd->add_flag("--confidential", p.confidential, "hide the address from other agencies");
  cmd->add_option("--phone", p.phone, "contact phone");
  cmd->add_option("--email", p.email, "contact email");
}

absl::StatusOr<v1::AgencyProfile> ToProfile(const ProfileFlags& f) {
  v1::AgencyProfile p;
  p.set_display_name(f.name);
  auto kind = Kinds().find(f.kind);
  if (kind == Kinds().end())
    return absl::InvalidArgumentError(
        "--kind: hospital, community-agency, government-office, payer or other");
  p.set_kind(kind->second);
  for (const auto& s : f.services) p.add_services(s);
  for (const auto& s : f.postal_codes) p.mutable_area()->add_postal_codes(s);
  for (const auto& s : f.counties) p.mutable_area()->add_counties(s);
  for (const auto& s : f.languages) p.add_languages(s);
  for (const auto& s : f.roles) p.add_roles(s);
  p.mutable_address()->set_postal_code(f.address_postal_code);
  p.mutable_address()->set_confidential(f.confidential);
  p.mutable_contact()->set_phone(f.phone);
  p.mutable_contact()->set_email(f.email);
  return p;
}

absl::StatusOr<std::string> RawPublicKey(const std::string& file) {
  absl::StatusOr<std::string> pem = ReadFile(file);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<trust::Ed25519PublicKey> pub = trust::Ed25519PublicKey::FromPem(*pem);
  if (!pub.ok()) {
    // A private key file works too: its public half is taken.
    absl::StatusOr<trust::Ed25519PrivateKey> priv = trust::Ed25519PrivateKey::FromPem(*pem);
    if (!priv.ok()) return absl::InvalidArgumentError(absl::StrCat(file, " holds no Ed25519 key"));
    return priv->public_key().raw();
  }
  return pub->raw();
}

void PrintAgency(const v1::AgencyRecord& r) {
  std::cout << r.agency_id() << "  " << r.profile().display_name() << "  "
            << (r.active() ? "active" : "SUSPENDED") << "  v" << r.version() << "\n  services:";
  for (const auto& s : r.profile().services()) std::cout << " " << s;
  std::cout << "\n  languages:";
  for (const auto& s : r.profile().languages()) std::cout << " " << s;
  std::cout << "\n  area:";
  for (const auto& s : r.profile().area().postal_codes()) std::cout << " " << s;
  for (const auto& s : r.profile().area().counties()) std::cout << " " << s;
  std::cout << "\n  address: "
            << (r.profile().address().confidential() && r.profile().address().postal_code().empty()
                    ? "(confidential)"
                    : r.profile().address().postal_code())
            << "\n  keys:";
  for (const auto& k : r.keys())
    std::cout << " " << k.key_id() << (k.revoked_unix_nanos() ? "(revoked)" : "");
  std::cout << "\n  capacity:";
  for (const auto& c : r.capacity()) std::cout << " " << c.service() << "=" << c.open_slots();
  std::cout << "\n  actors:";
  for (const auto& a : r.actors()) {
    std::cout << " " << a.user_id() << "[";
    for (int i = 0; i < a.roles_size(); ++i) std::cout << (i ? "," : "") << a.roles(i);
    std::cout << "]";
  }
  std::cout << "\n";
}

}  // namespace

void AddDirectoryCommands(CLI::App& app, Globals& g) {
  CLI::App* agency = app.add_subcommand("agency", "the agency directory");
  agency->require_subcommand(1);

  struct RegisterOpts {
    std::string id, key_id = "k1", public_key, admin_user;
    ProfileFlags profile;
    Signer signer;
  };
  auto reg = std::make_shared<RegisterOpts>();
  CLI::App* regc = agency->add_subcommand("register", "register an agency (hub admin)");
  regc->add_option("--id", reg->id, "agency id, e.g. org.foodbank")->required();
  AddProfileFlags(regc, reg->profile);
  regc->add_option("--agency-key-id", reg->key_id, "id of the agency's first key")
      ->capture_default_str();
  regc->add_option("--agency-public-key", reg->public_key, "the agency's first public key (PEM)")
      ->required();
  regc->add_option("--admin-user", reg->admin_user, "user id of the agency's own admin")
      ->required();
  AddSignFlags(regc, reg->signer, g);
  regc->callback([&g, reg] {
    absl::StatusOr<v1::AgencyProfile> profile = ToProfile(reg->profile);
    absl::StatusOr<std::string> pub = RawPublicKey(reg->public_key);
    if (!profile.ok() || !pub.ok()) {
      g.exit_code =
          FailUsage(std::string((!profile.ok() ? profile.status() : pub.status()).message()));
      return;
    }
    v1::RegisterAgency p;
    p.set_agency_id(reg->id);
    *p.mutable_profile() = *profile;
    p.mutable_initial_key()->set_key_id(reg->key_id);
    p.mutable_initial_key()->set_public_key(*pub);
    v1::ActorEntry* a = p.add_actors();
    a->set_user_id(reg->admin_user);
    a->add_roles("admin");
    Submit(g, p, reg->signer);
  });

  struct UpdateOpts {
    std::string id;
    ProfileFlags profile;
    Signer signer;
  };
  auto upd = std::make_shared<UpdateOpts>();
  CLI::App* u = agency->add_subcommand(
      "update", "replace an agency's profile (hub admin or the agency's admin)");
  u->add_option("--id", upd->id, "agency id")->required();
  AddProfileFlags(u, upd->profile);
  AddSignFlags(u, upd->signer, g);
  u->callback([&g, upd] {
    absl::StatusOr<v1::AgencyProfile> profile = ToProfile(upd->profile);
    if (!profile.ok()) {
      g.exit_code = FailUsage(std::string(profile.status().message()));
      return;
    }
    v1::UpdateAgencyProfile p;
    p.set_agency_id(upd->id);
    *p.mutable_profile() = *profile;
    Submit(g, p, upd->signer);
  });

  for (bool active : {false, true}) {
    struct StatusOpts {
      std::string id, reason;
      Signer signer;
    };
    auto so = std::make_shared<StatusOpts>();
    CLI::App* c = agency->add_subcommand(
        active ? "activate" : "suspend",
        active ? "re-activate an agency (hub admin)" : "suspend an agency (hub admin)");
    c->add_option("--id", so->id, "agency id")->required();
    c->add_option("--reason", so->reason, "why");
    AddSignFlags(c, so->signer, g);
    c->callback([&g, so, active] {
      v1::SetAgencyStatus p;
      p.set_agency_id(so->id);
      p.set_active(active);
      p.set_reason(so->reason);
      Submit(g, p, so->signer);
    });
  }

  struct ShowOpts {
    std::string id;
    uint64_t min_seq = 0;
  };
  auto show = std::make_shared<ShowOpts>();
  CLI::App* sh = agency->add_subcommand("show", "one agency");
  sh->add_option("--id", show->id, "agency id")->required();
  sh->add_option("--min-seq", show->min_seq, "wait until the directory has this seq");
  sh->callback([&g, show] {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::GetAgencyRequest req;
    req.set_agency_id(show->id);
    req.set_min_seq(show->min_seq);
    v1::AgencyRecord resp;
    grpc::Status st = Stub(g)->GetAgency(&ctx, req, &resp);
    absl::StatusOr<v1::AgencyRecord> result = resp;
    if (!st.ok()) result = FromGrpcStatus(st);
    Output(g, result, PrintAgency);
  });

  auto search = std::make_shared<v1::SearchAgenciesRequest>();
  auto kind = std::make_shared<std::string>();
  CLI::App* se = agency->add_subcommand("search", "agencies matching every criterion given");
  se->add_option("--service", *search->mutable_service(), "service code");
  se->add_option("--postal-code", *search->mutable_postal_code(), "in its service area");
  se->add_option("--county", *search->mutable_county(), "in its service area");
  se->add_option("--language", *search->mutable_language(), "language spoken");
  se->add_option("--agency-role", *search->mutable_role(), "e.g. receiver");
  se->add_option("--kind", *kind, "hospital, community-agency, ...");
  se->add_flag(
      "--with-open-capacity", [search](int64_t) { search->set_with_open_capacity(true); },
      "only agencies whose last report for --service has open slots");
  se->callback([&g, search, kind] {
    if (!kind->empty()) {
      auto k = Kinds().find(*kind);
      if (k == Kinds().end()) {
        g.exit_code =
            FailUsage("--kind: hospital, community-agency, government-office, payer or other");
        return;
      }
      search->set_kind(k->second);
    }
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::SearchAgenciesResponse resp;
    grpc::Status st = Stub(g)->SearchAgencies(&ctx, *search, &resp);
    absl::StatusOr<v1::SearchAgenciesResponse> result = resp;
    if (!st.ok()) result = FromGrpcStatus(st);
    Output(g, result, [](const v1::SearchAgenciesResponse& r) {
      for (const auto& a : r.agencies()) PrintAgency(a);
      std::cout << r.agencies_size() << " agencies\n";
    });
  });

  struct CapacityOpts {
    std::string agency, service;
    uint32_t slots = 0;
    Signer signer;
  };
  auto cap = std::make_shared<CapacityOpts>();
  CLI::App* capc = agency->add_subcommand(
      "capacity", "report open slots for a service (the agency's admin or receiver)");
  capc->add_option("--agency", cap->agency, "agency id")->required();
  capc->add_option("--service", cap->service, "service code")->required();
  capc->add_option("--open-slots", cap->slots, "open slots now")->required();
  AddSignFlags(capc, cap->signer, g);
  capc->callback([&g, cap] {
    v1::ReportCapacity p;
    p.set_agency_id(cap->agency);
    p.set_service(cap->service);
    p.set_open_slots(cap->slots);
    Submit(g, p, cap->signer);
  });

  struct AuthorityOpts {
    std::string authority, reason;
    std::vector<std::string> holders;
    bool shared = false;
    Signer signer;
  };
  auto auth = std::make_shared<AuthorityOpts>();
  CLI::App* authc = agency->add_subcommand(
      "authority", "who may use an identifier authority such as a state Medicaid id (hub admin)");
  authc->add_option("--authority", auth->authority, "the authority, e.g. us-or-medicaid")
      ->required();
  authc->add_option("--holder", auth->holders,
                    "an agency that may use it (repeatable; none "
                    "retires it)");
  authc->add_flag("--shared", auth->shared,
                  "several agencies use it: holding it is no relationship to a person");
  authc->add_option("--reason", auth->reason, "why")->required();
  AddSignFlags(authc, auth->signer, g);
  authc->callback([&g, auth] {
    v1::SetIdentifierAuthority p;
    p.set_authority(auth->authority);
    for (const std::string& h : auth->holders) p.add_holders(h);
    p.set_shared(auth->shared);
    p.set_reason(auth->reason);
    Submit(g, p, auth->signer);
  });

  auto file = std::make_shared<std::string>();
  CLI::App* env = app.add_subcommand("envelope", "signed envelopes");
  env->require_subcommand(1);
  CLI::App* resend =
      env->add_subcommand("submit", "send a saved envelope unchanged (a safe retry)");
  resend->add_option("--file", *file, "an envelope written by --save-envelope")->required();
  resend->callback([&g, file] {
    absl::StatusOr<std::string> bytes = ReadFile(*file);
    if (!bytes.ok()) {
      g.exit_code = FailUsage(std::string(bytes.status().message()));
      return;
    }
    SubmitBytes(g, *bytes);
  });

  CLI::App* actor = app.add_subcommand("actor", "people acting for an agency");
  actor->require_subcommand(1);
  struct ActorOpts {
    std::string agency, user, name;
    std::vector<std::string> roles;
    Signer signer;
  };
  auto aa = std::make_shared<ActorOpts>();
  CLI::App* add =
      actor->add_subcommand("add", "add or change an actor (the agency's admin or the hub admin)");
  add->add_option("--agency", aa->agency, "agency id")->required();
  add->add_option("--user-id", aa->user, "the person's user id")->required();
  add->add_option("--name", aa->name, "display name");
  add->add_option("--actor-role", aa->roles,
                  "sender, receiver, compliance, emergency, admin (repeatable)")
      ->required();
  AddSignFlags(add, aa->signer, g);
  add->callback([&g, aa] {
    v1::SetActor p;
    p.set_agency_id(aa->agency);
    p.mutable_actor()->set_user_id(aa->user);
    p.mutable_actor()->set_display_name(aa->name);
    for (const auto& r : aa->roles) p.mutable_actor()->add_roles(r);
    Submit(g, p, aa->signer);
  });
  auto ar = std::make_shared<ActorOpts>();
  CLI::App* rm = actor->add_subcommand("remove", "remove an actor");
  rm->add_option("--agency", ar->agency, "agency id")->required();
  rm->add_option("--user-id", ar->user, "the person's user id")->required();
  AddSignFlags(rm, ar->signer, g);
  rm->callback([&g, ar] {
    v1::RemoveActor p;
    p.set_agency_id(ar->agency);
    p.set_user_id(ar->user);
    Submit(g, p, ar->signer);
  });

  CLI::App* keys = app.get_subcommand("keys");
  struct KeyOpts {
    std::string agency, key_id, public_key, reason, not_after;
    Signer signer;
  };
  auto ka = std::make_shared<KeyOpts>();
  CLI::App* kadd = keys->add_subcommand(
      "add", "add a key to an agency (hub admin); rotation keeps the old one valid");
  kadd->add_option("--agency", ka->agency, "agency id")->required();
  kadd->add_option("--agency-key-id", ka->key_id, "the new key's id")->required();
  kadd->add_option("--agency-public-key", ka->public_key, "the new public key (PEM)")->required();
  kadd->add_option("--not-after", ka->not_after, "expiry, RFC 3339");
  AddSignFlags(kadd, ka->signer, g);
  kadd->callback([&g, ka] {
    absl::StatusOr<std::string> pub = RawPublicKey(ka->public_key);
    absl::Time expiry;
    std::string err;
    if (!pub.ok() || (!ka->not_after.empty() &&
                      !absl::ParseTime(absl::RFC3339_full, ka->not_after, &expiry, &err))) {
      g.exit_code =
          FailUsage(!pub.ok() ? std::string(pub.status().message()) : "--not-after: " + err);
      return;
    }
    v1::AddAgencyKey p;
    p.set_agency_id(ka->agency);
    p.mutable_key()->set_key_id(ka->key_id);
    p.mutable_key()->set_public_key(*pub);
    if (!ka->not_after.empty())
      p.mutable_key()->set_not_after_unix_nanos(absl::ToUnixNanos(expiry));
    Submit(g, p, ka->signer);
  });
  auto kr = std::make_shared<KeyOpts>();
  CLI::App* krev = keys->add_subcommand("revoke", "revoke an agency's key from now on (hub admin)");
  krev->add_option("--agency", kr->agency, "agency id")->required();
  krev->add_option("--agency-key-id", kr->key_id, "the key to revoke")->required();
  krev->add_option("--reason", kr->reason, "why, e.g. lost laptop")->required();
  AddSignFlags(krev, kr->signer, g);
  krev->callback([&g, kr] {
    v1::RevokeAgencyKey p;
    p.set_agency_id(kr->agency);
    p.set_key_id(kr->key_id);
    p.set_reason(kr->reason);
    Submit(g, p, kr->signer);
  });
}

}  // namespace careloop::cli
