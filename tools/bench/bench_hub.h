// The hub's cores in one process for the benchmarks: a ledger with fsync on
// in a scratch directory, the directory, consent and referral cores, the
// hub admin's and the agencies' keys, and helpers that register agencies
// and grant consents through the real signed paths.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "services/consent/consent_core.h"
#include "services/directory/directory.h"
#include "services/referral/referral_core.h"
#include "services/trust/envelope.h"
#include "services/trust/head_signer.h"
#include "storage/local_ledger.h"

namespace careloop::bench {

// A benchmark's scratch directory: `dir` if given (kept), else a fresh one
// under the system's temp dir named after `tag`, removed when this goes.
// Declare it before what it holds (the hub) so that it goes last.
class Scratch {
 public:
  Scratch(const std::string& dir, const std::string& tag) : path_(dir), temp_(dir.empty()) {
    if (temp_) {
      path_ =
          (std::filesystem::temp_directory_path() / absl::StrCat("careloop-", tag, "-", getpid()))
              .string();
    }
    std::filesystem::create_directories(path_);
  }
  ~Scratch() {
    std::error_code ec;
    if (temp_) std::filesystem::remove_all(path_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool temp_;
};

struct BenchHub {
  explicit BenchHub(const std::string& dir)
      : admin_key(*trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0a'))),
        agency_key(*trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b'))),
        signer("careloop.bench", *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x07'))) {
    storage::LedgerOptions lo;
    lo.dir = dir + "/ledger";
    lo.signer = &signer;
    ledger = *storage::LocalLedger::Open(lo);
    directory::HubAdmin admin;
    admin.public_key = admin_key.public_key().raw();
    state = std::make_unique<directory::DirectoryState>(admin);
    runner = std::make_unique<storage::ProjectionRunner>(ledger.get(), state.get());
    CARELOOP_CHECK(runner->Start().ok());
    directory = std::make_unique<directory::DirectoryCore>(ledger.get(), state.get(), runner.get(),
                                                           SystemClock());
    consent = std::make_unique<consent::ConsentCore>(ledger.get(), state.get(), runner.get(),
                                                     SystemClock());
    referrals = std::make_unique<referral::ReferralCore>(ledger.get(), state.get(), runner.get(),
                                                         consent.get(), SystemClock());
  }
  ~BenchHub() {
    referrals.reset();
    consent.reset();
    directory.reset();
    runner->Stop();
    CARELOOP_CHECK(ledger->Close().ok());
  }

  std::string Sign(const google::protobuf::Message& p, const std::string& sender,
                   const std::string& role, const trust::Ed25519PrivateKey& key,
                   const std::string& key_id, const std::string& user) {
    v1::Actor actor;
    actor.set_user_id(user);
    actor.set_role(role);
    return *trust::SignEnvelope(
        trust::NewEnvelope(p, sender, actor, key_id, absl::Now(), absl::StrCat("setup-", ++n_)),
        key);
  }
  // An agency with one actor "u-1" in `role`, signing with agency_key as k1.
  void Register(const std::string& id, const std::string& role) {
    v1::RegisterAgency r;
    r.set_agency_id(id);
    r.mutable_profile()->set_display_name(id);
    r.mutable_profile()->set_kind(role == "sender" ? v1::HOSPITAL : v1::COMMUNITY_AGENCY);
    r.mutable_profile()->add_roles(role);
    if (role == "receiver") r.mutable_profile()->add_services("food-insecurity");
    r.mutable_initial_key()->set_key_id("k1");
    r.mutable_initial_key()->set_public_key(agency_key.public_key().raw());
    v1::ActorEntry* a = r.add_actors();
    a->set_user_id("u-1");
    a->add_roles(role);
    CARELOOP_CHECK(directory
                       ->Submit(Sign(r, directory::kHubAgency, directory::kHubAdminRole, admin_key,
                                     "hub-admin-1", "hub-admin"))
                       .ok());
  }
  // The subject org.stmarys knows as `mrn`, with a consent to the network.
  void GrantNetworkConsent(const std::string& mrn) {
    v1::ResolveSubjectRequest rq;
    rq.add_identifiers()->set_authority("org.stmarys/mrn");
    rq.mutable_identifiers(0)->set_value(mrn);
    const std::string s = consent->Resolve(rq, policy::Caller::Agency("org.stmarys"))->subject_id();
    v1::GrantConsent g;
    v1::Consent* k = g.mutable_consent();
    k->set_subject_id(s);
    k->mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
    k->mutable_provision()->set_permit(true);
    k->mutable_provision()->add_recipients()->set_network(true);
    k->mutable_evidence()->set_sha256(std::string(32, 'e'));
    k->mutable_evidence()->set_media_type("application/pdf");
    CARELOOP_CHECK(consent->Submit(Sign(g, "org.stmarys", "sender", agency_key, "k1", "u-1")).ok());
  }

  // A signed referral from org.stmarys to `to` about `mrn`: two 512-byte
  // sections sealed with fresh salts.
  v1::SubmitReferralRequest Referral(const std::string& id, const std::string& mrn,
                                     const std::string& to) {
    std::vector<v1::Section> sections(2);
    sections[0].set_section_id("contact");
    sections[0].set_category("contact");
    sections[1].set_section_id("needs");
    sections[1].set_category("social-needs");
    for (auto& s : sections) {
      s.set_media_type("text/plain");
      s.set_content(std::string(512, 'x'));
    }
    v1::ReferralManifest m;
    m.set_referral_id(id);
    m.mutable_subject()->set_authority("org.stmarys/mrn");
    m.mutable_subject()->set_value(mrn);
    m.set_service_category("food-insecurity");
    m.set_reason("discharge");
    m.set_priority(v1::ROUTINE);
    m.set_purpose("care-coordination");
    m.mutable_routing()->set_recipient_agency(to);
    auto digests = referral::SealSections(&sections, referral::RandomBytes);
    CARELOOP_CHECK(digests.ok());
    for (auto& d : *digests) *m.add_sections() = d;
    v1::Actor actor;
    actor.set_user_id("u-1");
    actor.set_role("sender");
    v1::SubmitReferralRequest req;
    req.set_envelope(*trust::SignEnvelope(
        trust::NewEnvelope(m, "org.stmarys", actor, "k1", absl::Now(), id), agency_key));
    for (auto& s : sections) *req.add_sections() = s;
    req.set_force_reason("load test: one subject per client");
    return req;
  }

  trust::Ed25519PrivateKey admin_key, agency_key;
  trust::Ed25519HeadSigner signer;
  std::unique_ptr<storage::LocalLedger> ledger;
  std::unique_ptr<directory::DirectoryState> state;
  std::unique_ptr<storage::ProjectionRunner> runner;
  std::unique_ptr<directory::DirectoryCore> directory;
  std::unique_ptr<consent::ConsentCore> consent;
  std::unique_ptr<referral::ReferralCore> referrals;

 private:
  int n_ = 0;
};

}  // namespace careloop::bench
