#include "services/edge/demo_seed.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/file.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/edge/totp.h"
#include "services/trust/envelope.h"

namespace careloop::edge {
namespace {

using nlohmann::json;

struct DemoAgency {
  const char* id;
  const char* name;
  v1::AgencyKind kind;
  const char* role;       // the agency's role
  const char* service;    // "" : none
  const char* also = "";  // a second role ("" : none)
};

const std::vector<DemoAgency>& Agencies() {
  static const std::vector<DemoAgency> a = {
      {"org.stmarys", "St Mary's Hospital", v1::HOSPITAL, "sender", "", "emergency"},
      {"org.foodbank", "Valley Food Bank", v1::COMMUNITY_AGENCY, "receiver", "food-insecurity"},
      {"org.shelter", "Riverside Shelter", v1::COMMUNITY_AGENCY, "receiver", "housing-instability"},
      {"org.privacy", "Network Privacy Office", v1::OTHER_KIND, "compliance", ""},
  };
  return a;
}

// The staff: one person in each agency's role (St Mary's emergency
// department too), and the food bank's admin (who signs in with a second
// factor and manages its staff).
struct DemoPerson {
  const char* agency;
  const char* user;
  const char* name;
  const char* role;
};

const std::vector<DemoPerson>& People() {
  static const std::vector<DemoPerson> p = {
      {"org.stmarys", "u-planner", "Dana Planner", "sender"},
      {"org.stmarys", "u-ed", "Riley Emergency", "emergency"},
      {"org.foodbank", "u-intake", "Sam Intake", "receiver"},
      {"org.foodbank", "u-admin", "Jo Admin", "admin"},
      {"org.shelter", "u-intake", "Alex Intake", "receiver"},
      {"org.privacy", "u-officer", "Pat Officer", "compliance"},
  };
  return p;
}

StaffMember MemberOf(const DemoPerson& p) {
  return StaffMember{p.agency, p.user, p.name, {p.role}, false, false};
}

constexpr char kDemoMrn[] = "000123";

// A password a person can type: 16 characters of an unambiguous alphabet.
std::string NewPassword() {
  static constexpr char kAlphabet[] = "abcdefghjkmnpqrstuvwxyz23456789";
  const std::string random = RandomBytes(16);
  std::string out;
  for (unsigned char c : random) out.push_back(kAlphabet[c % (sizeof(kAlphabet) - 1)]);
  return out;
}

absl::StatusOr<std::string> SignAsHubAdmin(const DemoSeedParts& p,
                                           const google::protobuf::Message& payload) {
  v1::Actor actor;
  actor.set_user_id("hub-admin");
  actor.set_role("hub-admin");
  v1::Envelope e = trust::NewEnvelope(payload, "hub", std::move(actor), "hub-admin-1",
                                      p.clock->Now(), HexEncode(RandomBytes(16)));
  return trust::SignEnvelope(std::move(e), *p.hub_admin_key);
}

// The agency's key in custody and its record in the directory.
absl::Status Register(const DemoSeedParts& p, const DemoAgency& a) {
  absl::StatusOr<trust::Ed25519PrivateKey> key = p.keys->Load(a.id);
  if (absl::IsNotFound(key.status())) key = p.keys->Create(a.id);
  RETURN_IF_ERROR(key.status());
  v1::RegisterAgency r;
  r.set_agency_id(a.id);
  v1::AgencyProfile* profile = r.mutable_profile();
  profile->set_display_name(a.name);
  profile->set_kind(a.kind);
  profile->add_roles(a.role);
  if (*a.also != '\0') profile->add_roles(a.also);
  if (*a.service != '\0') profile->add_services(a.service);
  profile->add_languages("en");
  r.mutable_initial_key()->set_key_id("k1");
  r.mutable_initial_key()->set_public_key(key->public_key().raw());
  for (const DemoPerson& staff : People()) {
    if (staff.agency != std::string(a.id)) continue;
    v1::ActorEntry* person = r.add_actors();
    person->set_user_id(staff.user);
    person->set_display_name(staff.name);
    person->add_roles(staff.role);
  }
  ASSIGN_OR_RETURN(std::string envelope, SignAsHubAdmin(p, r));
  absl::StatusOr<v1::Receipt> receipt = p.hub->SubmitDirectoryChange(envelope);
  if (absl::IsAlreadyExists(receipt.status())) return absl::OkStatus();  // seeded before
  return receipt.status();
}

// A staff account per demo person, with the password (and an admin's
// second factor) kept in `saved`.
absl::StatusOr<json> Logins(const DemoSeedParts& p, json* saved) {
  json logins = json::array();
  for (const DemoPerson& person : People()) {
    const std::string key = absl::StrCat(person.agency, "/", person.user);
    const std::string password = saved->at(key).get<std::string>();
    absl::StatusOr<Enrollment> added = p.accounts->Add(MemberOf(person), password);
    if (!added.ok() && !absl::IsAlreadyExists(added.status())) return added.status();
    if (added.ok() && !added->totp_secret.empty()) {
      (*saved)[key + "#totp"] = Base32Encode(added->totp_secret);
    }
    json login{{"agency", person.agency},
               {"user", person.user},
               {"password", password},
               {"name", person.name},
               {"role", person.role}};
    if (saved->contains(key + "#totp")) login["totp_secret"] = (*saved)[key + "#totp"];
    logins.push_back(std::move(login));
  }
  return logins;
}

// What an earlier seed kept: passwords by "<agency>/<user>", the consent id.
json LoadSaved(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return json::object();
  json saved = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return saved.is_object() ? saved : json::object();
}

// The demo patient's consent: contact details and social needs, to any
// agency of the network, for care coordination (not behavioral health).
absl::StatusOr<std::string> RecordDemoConsent(const DemoSeedParts& p) {
  const StaffMember planner = MemberOf(People()[0]);
  ASSIGN_OR_RETURN(std::string subject, p.desk->ResolvePerson(planner, kDemoMrn));
  v1::Consent c;
  c.set_subject_id(subject);
  c.mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
  c.mutable_provision()->set_permit(true);
  c.mutable_provision()->add_recipients()->set_network(true);
  c.mutable_provision()->add_purposes("care-coordination");
  c.mutable_provision()->add_categories("contact");
  c.mutable_provision()->add_categories("social-needs");
  c.mutable_evidence()->set_sha256(ToBytes(Sha256("demo: the patient's signed consent form")));
  c.mutable_evidence()->set_media_type("application/pdf");
  return p.desk->RecordConsent(planner, c);
}

}  // namespace

absl::StatusOr<std::string> SeedDemo(const DemoSeedParts& p) {
  CARELOOP_CHECK(p.hub && p.keys && p.accounts && p.desk && p.hub_admin_key && p.clock);
  for (const DemoAgency& a : Agencies()) {
    RETURN_IF_ERROR(Register(p, a));
    if (p.feed != nullptr) p.feed->Follow(a.id);
  }
  // Passwords are chosen once and kept, so every seed prints the same.
  json saved = LoadSaved(p.logins_file);
  for (const DemoPerson& person : People()) {
    const std::string key = absl::StrCat(person.agency, "/", person.user);
    if (!saved.contains(key)) saved[key] = NewPassword();
  }
  RETURN_IF_ERROR(WriteFileAtomically(p.logins_file, saved.dump(), 0600));
  ASSIGN_OR_RETURN(json logins, Logins(p, &saved));
  RETURN_IF_ERROR(WriteFileAtomically(p.logins_file, saved.dump(), 0600));
  if (!saved.contains("consent")) {
    ASSIGN_OR_RETURN(std::string consent_id, RecordDemoConsent(p));
    saved["consent"] = consent_id;
    RETURN_IF_ERROR(WriteFileAtomically(p.logins_file, saved.dump(), 0600));
  }
  return json{{"logins", logins}, {"mrn", kDemoMrn}, {"consent", saved["consent"]}}.dump();
}

}  // namespace careloop::edge
