// A hub's consent side in-process for tests and benchmarks: a real ledger
// (RocksDB in a temp dir), the directory projection and core, the consent
// core, a fake clock, and a few registered agencies that sign with real keys.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "services/consent/consent_core.h"
#include "services/directory/directory.h"
#include "storage/local_ledger.h"
#include "tests/support/test_env.h"

namespace careloop::testing {

struct TestAgency {
  std::string id;
  v1::AgencyKind kind;
  std::vector<std::string> roles;  // the agency's, and its one actor's
};

// org.stmarys (hospital), org.clinic (hospital), org.foodbank and
// org.shelter (community), org.er (hospital with the emergency role),
// org.compliance (compliance).
inline std::vector<TestAgency> DefaultTestAgencies() {
  return {{"org.stmarys", v1::HOSPITAL, {"sender", "admin"}},
          {"org.clinic", v1::HOSPITAL, {"sender", "admin"}},
          {"org.foodbank", v1::COMMUNITY_AGENCY, {"receiver"}},
          {"org.shelter", v1::COMMUNITY_AGENCY, {"receiver"}},
          {"org.er", v1::HOSPITAL, {"sender", "emergency"}},
          {"org.compliance", v1::OTHER_KIND, {"compliance"}}};
}

// What a ledger says about disclosures and revocations, read end to end.
struct DisclosureAudit {
  int disclosures = 0;
  int revocations = 0;
  int notices = 0;  // holders told of a revocation
  // Disclosures ordered after a revocation of a consent they relied on: must be 0.
  int after_covering_revocation = 0;
};

inline absl::StatusOr<DisclosureAudit> AuditDisclosures(storage::Ledger* ledger) {
  DisclosureAudit out;
  std::map<std::string, uint64_t> revoked_at;  // consent id -> seq of its revocation
  std::vector<std::pair<uint64_t, v1::DisclosureRecorded>> disclosures;
  v1::ReadRequest r;
  r.set_include_payloads(true);
  for (uint64_t from = 1;;) {
    r.set_from_seq(from);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger->Read(r));
    if (page.events().empty()) break;
    for (const v1::Event& e : page.events()) {
      from = e.header().seq() + 1;
      if (e.header().type() == "RevokeConsent") {
        v1::Envelope env;
        v1::RevokeConsent rc;
        if (!env.ParseFromString(e.payload()) || !rc.ParseFromString(env.payload()))
          return absl::DataLossError("a revocation does not parse");
        revoked_at[rc.consent_id()] = e.header().seq();
      } else if (e.header().type() == "ConsentRevocationNotice") {
        ++out.notices;
      } else if (e.header().type() == "DisclosureRecorded") {
        v1::DisclosureRecorded d;
        if (!d.ParseFromString(e.payload()))
          return absl::DataLossError("a disclosure does not parse");
        disclosures.emplace_back(e.header().seq(), std::move(d));
      }
    }
  }
  out.disclosures = static_cast<int>(disclosures.size());
  out.revocations = static_cast<int>(revoked_at.size());
  for (const auto& [seq, d] : disclosures) {
    for (const std::string& c : d.consent_ids()) {
      auto it = revoked_at.find(c);
      if (it != revoked_at.end() && it->second < seq) ++out.after_covering_revocation;
    }
  }
  return out;
}

class ConsentEnv {
 public:
  struct Options {
    bool unsafe_no_sync = false;  // only where durability is not the point
  };
  ConsentEnv() : ConsentEnv(Options{}) {}
  explicit ConsentEnv(Options o) : options_(o) {}

  absl::Status Start(const std::vector<TestAgency>& agencies = DefaultTestAgencies()) {
    log_signer_ = TestSigner();
    ASSIGN_OR_RETURN(admin_key_, trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0a')));
    ASSIGN_OR_RETURN(agency_key_, trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b')));
    RETURN_IF_ERROR(Open());
    for (const TestAgency& a : agencies) RETURN_IF_ERROR(Register(a));
    // A state Medicaid id both hospitals may use (shared: holding it is no
    // relationship to a person).
    std::vector<std::string> hospitals;
    for (const TestAgency& a : agencies) {
      if (a.kind == v1::HOSPITAL && a.id != "org.er") hospitals.push_back(a.id);
    }
    if (!hospitals.empty()) RETURN_IF_ERROR(ShareAuthority("us-or-medicaid", hospitals));
    return absl::OkStatus();
  }

  absl::Status ShareAuthority(const std::string& authority,
                              const std::vector<std::string>& holders) {
    v1::SetIdentifierAuthority a;
    a.set_authority(authority);
    for (const std::string& h : holders) a.add_holders(h);
    a.set_shared(true);
    a.set_reason("state Medicaid ids");
    RETURN_IF_ERROR(directory_->Submit(SignAsHub(a)).status());
    return runner_->WaitFor(ledger_->size(), absl::Seconds(30));
  }

  // Closes everything and opens it again on the same data: what survives is
  // what the ledger holds.
  absl::Status Restart() {
    consent_.reset();
    directory_.reset();
    runner_.reset();
    state_.reset();
    RETURN_IF_ERROR(ledger_->Close());
    ledger_.reset();
    RETURN_IF_ERROR(Open());
    return runner_->WaitFor(ledger_->size(), absl::Seconds(30));
  }

  absl::Status Open() {
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.signer = log_signer_.get();
    o.clock = &clock_;
    o.unsafe_no_sync = options_.unsafe_no_sync;
    ASSIGN_OR_RETURN(ledger_, storage::LocalLedger::Open(o));
    directory::HubAdmin admin;
    admin.public_key = admin_key_->public_key().raw();
    state_ = std::make_unique<directory::DirectoryState>(admin);
    runner_ = std::make_unique<storage::ProjectionRunner>(ledger_.get(), state_.get());
    RETURN_IF_ERROR(runner_->Start());
    directory_ = std::make_unique<directory::DirectoryCore>(ledger_.get(), state_.get(),
                                                            runner_.get(), &clock_);
    consent::ConsentOptions co;
    co.new_subject_id = [this] { return absl::StrCat("s-", ++next_subject_); };
    consent_ = std::make_unique<consent::ConsentCore>(ledger_.get(), state_.get(), runner_.get(),
                                                      &clock_, co);
    return absl::OkStatus();
  }

  absl::Status Register(const TestAgency& a) {
    v1::RegisterAgency r;
    r.set_agency_id(a.id);
    r.mutable_profile()->set_display_name(absl::StrCat("Agency ", a.id));
    r.mutable_profile()->set_kind(a.kind);
    r.mutable_profile()->mutable_address()->add_lines("1 Main St");
    r.mutable_profile()->mutable_address()->set_city("Portland");
    r.mutable_profile()->mutable_address()->set_postal_code("97201");
    for (const std::string& role : a.roles) {
      if (role != "admin") r.mutable_profile()->add_roles(role);
    }
    if (std::find(a.roles.begin(), a.roles.end(), "receiver") != a.roles.end()) {
      r.mutable_profile()->add_services("food-insecurity");
      r.mutable_profile()->add_services("housing-instability");
    }
    r.mutable_initial_key()->set_key_id("k1");
    r.mutable_initial_key()->set_public_key(agency_key_->public_key().raw());
    v1::ActorEntry* actor = r.add_actors();
    actor->set_user_id(absl::StrCat("u-", a.id));
    for (const std::string& role : a.roles) actor->add_roles(role);
    return directory_->Submit(SignAsHub(r)).status();
  }

  // An envelope from `agency`'s one actor acting in `role`.
  std::string Sign(const google::protobuf::Message& payload, const std::string& agency,
                   const std::string& role, std::string message_id = "") {
    return SignWith(payload, agency, absl::StrCat("u-", agency), role, "k1", *agency_key_,
                    message_id);
  }
  // The raw public key the test agencies sign with.
  std::string AgencyPublicKey() const { return agency_key_->public_key().raw(); }
  std::string SignAsHub(const google::protobuf::Message& payload) {
    return SignWith(payload, directory::kHubAgency, "hub-admin", directory::kHubAdminRole,
                    "hub-admin-1", *admin_key_, "");
  }

  std::string SignWith(const google::protobuf::Message& payload, const std::string& sender,
                       const std::string& user, const std::string& role, const std::string& key_id,
                       const trust::Ed25519PrivateKey& key, std::string message_id) {
    v1::Actor actor;
    actor.set_user_id(user);
    actor.set_role(role);
    v1::Envelope e =
        trust::NewEnvelope(payload, sender, actor, key_id, clock_.Now(),
                           message_id.empty() ? absl::StrCat("m-", ++next_message_) : message_id);
    return *trust::SignEnvelope(e, key);
  }

  // A consent from the subject to share `categories` (empty: all
  // non-sensitive) with the network for care coordination.
  static v1::Consent NetworkConsent(const std::string& subject,
                                    std::vector<std::string> categories = {},
                                    std::vector<std::string> purposes = {"care-coordination"}) {
    v1::Consent c;
    c.set_subject_id(subject);
    c.mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
    c.mutable_provision()->set_permit(true);
    c.mutable_provision()->add_recipients()->set_network(true);
    for (const std::string& p : purposes) c.mutable_provision()->add_purposes(p);
    for (const std::string& cat : categories) c.mutable_provision()->add_categories(cat);
    c.mutable_evidence()->set_sha256(std::string(32, '\x42'));
    c.mutable_evidence()->set_media_type("application/pdf");
    return c;
  }

  // Grants `c` as `agency`; returns the consent id.
  absl::StatusOr<std::string> Grant(const v1::Consent& c,
                                    const std::string& agency = "org.stmarys") {
    v1::GrantConsent g;
    *g.mutable_consent() = c;
    ASSIGN_OR_RETURN(v1::SubmitEnvelopeResponse r, consent_->Submit(Sign(g, agency, "sender")));
    return r.assigned_id();
  }

  absl::StatusOr<std::string> NewSubject(const std::string& mrn,
                                         const std::string& agency = "org.stmarys") {
    v1::ResolveSubjectRequest req;
    v1::Identifier* id = req.add_identifiers();
    id->set_authority(absl::StrCat(agency, "/mrn"));
    id->set_value(mrn);
    ASSIGN_OR_RETURN(v1::ResolveSubjectResponse r, consent_->Resolve(req, Who(agency)));
    return r.subject_id();
  }

  absl::StatusOr<v1::CheckConsentResponse> Check(const std::string& subject,
                                                 const std::string& recipient,
                                                 std::vector<std::string> categories,
                                                 const std::string& purpose = "care-coordination") {
    v1::CheckConsentRequest req;
    req.set_subject_id(subject);
    req.set_recipient_agency(recipient);
    req.set_purpose(purpose);
    for (const std::string& c : categories) req.add_categories(c);
    return consent_->Decide(req);  // the hub's own decision
  }

  // Checks and, if every category is permitted, records the disclosure.
  absl::StatusOr<v1::Commit> Disclose(const std::string& subject, const std::string& recipient,
                                      std::vector<std::string> categories,
                                      const std::string& purpose = "care-coordination") {
    ASSIGN_OR_RETURN(v1::CheckConsentResponse d, Check(subject, recipient, categories, purpose));
    v1::DisclosureRecorded rec;
    rec.set_disclosing_agency("org.stmarys");
    rec.set_record_type("referral");
    rec.set_record_id(absl::StrCat("r-", ++next_record_));
    for (const std::string& c : categories) rec.add_categories(c);
    ASSIGN_OR_RETURN(v1::AppendRequest req, consent::DisclosureAppend(d, rec));
    return ledger_->Append(std::move(req));
  }

  storage::LocalLedger* ledger() { return ledger_.get(); }
  consent::ConsentCore* consent() { return consent_.get(); }
  directory::DirectoryCore* directory() { return directory_.get(); }
  directory::DirectoryState* directory_state() { return state_.get(); }
  storage::ProjectionRunner* runner() { return runner_.get(); }
  FakeClock& clock() { return clock_; }
  const TempDir& dir() const { return dir_; }

 private:
  Options options_;
  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<trust::Ed25519HeadSigner> log_signer_;
  std::optional<trust::Ed25519PrivateKey> admin_key_, agency_key_;
  std::unique_ptr<storage::LocalLedger> ledger_;
  std::unique_ptr<directory::DirectoryState> state_;
  std::unique_ptr<storage::ProjectionRunner> runner_;
  std::unique_ptr<directory::DirectoryCore> directory_;
  std::unique_ptr<consent::ConsentCore> consent_;
  std::atomic<int> next_subject_{0}, next_message_{0}, next_record_{0};
};

}  // namespace careloop::testing
