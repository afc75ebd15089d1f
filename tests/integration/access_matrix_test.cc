// The access matrix: every (RPC, signed payload type) of every service, from
// the services' descriptors and the policy tables, called by every kind of
// party against a real careloopd with realistic objects (a referral with a
// former recipient, a subject with identifiers, consents, a break-glass, a
// consumer), in dev mode and over mTLS. Each answer is checked against the
// table: a party the table does not name is refused (PERMISSION_DENIED or
// UNAUTHENTICATED); one it names is never refused by the gate. An RPC with no
// table entry, or no request here to call it with, fails the test, so a new
// RPC cannot be forgotten. For the unrelated agency, an answer about another
// agency's object and one about a missing object must not differ.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status.h"
#include "careloop/v1/audit.pb.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/directory.pb.h"
#include "careloop/v1/ledger.pb.h"
#include "careloop/v1/notification.pb.h"
#include "careloop/v1/referral.pb.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/referral/sections.h"
#include "services/trust/certs.h"
#include "services/trust/ed25519.h"
#include "services/trust/envelope.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using policy::Rule;

// ---- parties ----

enum class Who { kAgency, kAdmin, kHubService, kNobody };

struct Party {
  std::string name;  // the matrix's column
  Who who = Who::kNobody;
  std::string agency;
  std::string user;  // the actor it signs with; "" = one whose role the rule names
};

const std::vector<Party>& Parties() {
  static const auto* all = new std::vector<Party>{
      {"unrelated", Who::kAgency, "org.third", ""},
      {"sender", Who::kAgency, "org.stmarys", ""},
      {"recipient", Who::kAgency, "org.foodbank", ""},
      {"former", Who::kAgency, "org.shelter", ""},
      {"compliance", Who::kAgency, "org.privacy", ""},
      {"emergency", Who::kAgency, "org.er", ""},
      {"wrong-role", Who::kAgency, "org.stmarys", "u-clerk"},
      {"hub-admin", Who::kAdmin, "", "hub-admin"},
      {"hub-service", Who::kHubService, "", ""},
      {"nobody", Who::kNobody, "", ""},
  };
  return *all;
}

struct AgencySpec {
  std::string id;
  v1::AgencyKind kind;
  std::vector<std::string> roles;                           // the agency's
  std::vector<std::pair<std::string, std::string>> actors;  // user id, role
  bool receiver = false;
};

const std::vector<AgencySpec>& Agencies() {
  static const auto* all = new std::vector<AgencySpec>{
      {"org.stmarys",
       v1::HOSPITAL,
       {"sender"},
       {{"u-admin", "admin"}, {"u-sender", "sender"}, {"u-clerk", "receiver"}}},
      {"org.third",
       v1::HOSPITAL,
       {"sender"},
       {{"u-admin", "admin"}, {"u-sender", "sender"}, {"u-receiver", "receiver"}}},
      {"org.foodbank",
       v1::COMMUNITY_AGENCY,
       {"receiver"},
       {{"u-admin", "admin"}, {"u-receiver", "receiver"}},
       true},
      {"org.shelter",
       v1::COMMUNITY_AGENCY,
       {"receiver"},
       {{"u-admin", "admin"}, {"u-receiver", "receiver"}},
       true},
      {"org.privacy",
       v1::OTHER_KIND,
       {"compliance"},
       {{"u-admin", "admin"}, {"u-compliance", "compliance"}}},
      {"org.er",
       v1::HOSPITAL,
       {"sender", "emergency"},
       {{"u-admin", "admin"}, {"u-emergency", "emergency"}}},
      {"org.spare", v1::COMMUNITY_AGENCY, {"receiver"}, {{"u-admin", "admin"}}, true},
  };
  return *all;
}

const AgencySpec& SpecOf(const std::string& id) {
  for (const AgencySpec& a : Agencies()) {
    if (a.id == id) return a;
  }
  ADD_FAILURE() << "no agency " << id;
  return Agencies().front();
}

v1::AgencyProfile ProfileOf(const AgencySpec& a) {
  v1::AgencyProfile p;
  p.set_display_name("Agency " + a.id);
  p.set_kind(a.kind);
  p.mutable_address()->add_lines("1 Main St");
  p.mutable_address()->set_city("Portland");
  p.mutable_address()->set_postal_code("97201");
  for (const std::string& r : a.roles) p.add_roles(r);
  if (a.receiver) {
    p.add_services("food-insecurity");
    p.mutable_area()->add_postal_codes("97201");
  }
  return p;
}

// ---- a careloopd, in dev mode or over mTLS ----

struct Answer {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  std::string bytes;  // the (first) response
};

class MatrixHub {
 public:
  explicit MatrixHub(bool tls) : tls_(tls) {}
  ~MatrixHub() {
    if (child_) child_->Signal(SIGTERM), (void)child_->Wait(absl::Seconds(60));
  }

  absl::Status Start() {
    ASSIGN_OR_RETURN(admin_key_, trust::Ed25519PrivateKey::Generate());
    std::ofstream(dir_.Sub("admin.pub")) << admin_key_.public_key().ToPem();
    for (const AgencySpec& a : Agencies()) {
      ASSIGN_OR_RETURN(trust::Ed25519PrivateKey k, trust::Ed25519PrivateKey::Generate());
      keys_.emplace(a.id, std::move(k));
    }
    std::vector<std::string> args = {"--data-dir", dir_.Sub("hub"), "--admin-public-key",
                                     dir_.Sub("admin.pub")};
    if (tls_) {
      RETURN_IF_ERROR(MakePki());
      args.insert(args.end(), {"--tls-cert", dir_.Sub("server.crt"), "--tls-key",
                               dir_.Sub("server.key"), "--tls-client-ca", dir_.Sub("ca.crt")});
    }
    std::string ledger;
    ASSIGN_OR_RETURN(child_, StartCareloopd(args, &address_, &ledger));
    return absl::OkStatus();
  }

  bool tls() const { return tls_; }
  const std::string& address() const { return address_; }
  // Each agency's public key (raw), as the hub admin registers it.
  std::map<std::string, std::string> PublicKeys() const {
    std::map<std::string, std::string> out;
    for (const auto& [id, k] : keys_) out[id] = k.public_key().raw();
    return out;
  }

  // One call of `method` as `party`: unary, or the first message of a
  // server stream (then cancelled).
  Answer Call(const Party& party, const std::string& method, bool streaming,
              const std::string& request) {
    std::shared_ptr<grpc::Channel> channel = ChannelFor(party);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!tls_ && party.who == Who::kAgency) ctx.AddMetadata("x-careloop-dev-agency", party.agency);
    if (!tls_ && party.who == Who::kAdmin) ctx.AddMetadata("x-careloop-dev-admin", party.user);
    grpc::GenericStub stub(channel);
    grpc::CompletionQueue cq;
    grpc::Slice slice(request);
    grpc::ByteBuffer req(&slice, 1);
    grpc::ByteBuffer resp;
    grpc::Status status;
    Answer out;
    if (!streaming) {
      auto call = stub.PrepareUnaryCall(&ctx, method, req, &cq);
      call->StartCall();
      call->Finish(&resp, &status, Tag(1));
      Await(&cq, 1);
    } else {
      auto call = stub.PrepareCall(&ctx, method, &cq);
      call->StartCall(Tag(1));
      Await(&cq, 1);
      call->Write(req, Tag(2));
      Await(&cq, 2);
      call->WritesDone(Tag(3));
      Await(&cq, 3);
      call->Read(&resp, Tag(4));
      const bool got = Await(&cq, 4);
      if (got) ctx.TryCancel();
      call->Finish(&status, Tag(5));
      Await(&cq, 5);
      if (got) status = grpc::Status::OK;  // it streamed: admitted
    }
    out.code = status.error_code();
    out.message = status.error_message();
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      (void)resp.Dump(&slices);
      for (const auto& s : slices)
        out.bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return out;
  }

  // An envelope carrying `payload`, signed as `party` with the actor `user`
  // in `role` (the hub admin signs as "hub").
  std::string Sign(const Party& party, const Message& payload, const std::string& user,
                   const std::string& role) {
    v1::Actor actor;
    actor.set_user_id(user);
    actor.set_role(role);
    const bool admin = party.who == Who::kAdmin;
    const std::string sender = admin ? names::kHubAgency : SignerAgency(party);
    v1::Envelope e = trust::NewEnvelope(payload, sender, actor, admin ? "hub-admin-1" : "k1",
                                        absl::Now(), absl::StrCat("m-", ++messages_));
    return *trust::SignEnvelope(e, admin ? admin_key_ : keys_.at(sender));
  }

  // The agency whose key signs for `party` (the hub's service identity and
  // nobody carry an unrelated agency's envelope: the connection must still
  // be refused with TLS).
  static std::string SignerAgency(const Party& party) {
    return party.who == Who::kAgency ? party.agency : "org.third";
  }

 private:
  static void* Tag(intptr_t n) { return reinterpret_cast<void*>(n); }
  static bool Await(grpc::CompletionQueue* cq, intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
      if (tag == Tag(want)) return ok;
    }
    return false;
  }

  absl::Status MakePki() {
    const absl::Time now = absl::Now();
    ASSIGN_OR_RETURN(ca_, trust::MakeCertificateAuthority("careloop test CA", now, absl::Hours(2)));
    std::ofstream(dir_.Sub("ca.crt")) << ca_.cert_pem;
    uint64_t serial = 2;
    ASSIGN_OR_RETURN(
        trust::PemPair server,
        trust::IssueServerCertificate(ca_, {}, {"127.0.0.1"}, serial++, now, absl::Hours(1)));
    std::ofstream(dir_.Sub("server.crt")) << server.cert_pem;
    std::ofstream(dir_.Sub("server.key")) << server.key_pem;
    certs_["hub-service"] = server;
    for (const AgencySpec& a : Agencies()) {
      ASSIGN_OR_RETURN(certs_[a.id],
                       trust::IssueAgencyCertificate(ca_, a.id, serial++, now, absl::Hours(1)));
    }
    ASSIGN_OR_RETURN(certs_["hub-admin"],
                     trust::IssueAdminCertificate(ca_, "hub-admin", serial++, now, absl::Hours(1)));
    std::error_code ec;
    std::filesystem::create_directories(dir_.Sub("hub/keys"), ec);
    bool generated = false;
    for (const char* k : {"hub/keys/hub-log.pem", "hub/keys/webhook.pem"}) {
      RETURN_IF_ERROR(trust::LoadOrGeneratePrivateKeyFile(dir_.Sub(k), &generated).status());
    }
    return absl::OkStatus();
  }

  std::shared_ptr<grpc::Channel> ChannelFor(const Party& party) {
    const std::string key = party.who == Who::kAgency       ? party.agency
                            : party.who == Who::kAdmin      ? "hub-admin"
                            : party.who == Who::kHubService ? "hub-service"
                                                            : "nobody";
    auto it = channels_.find(key);
    if (it != channels_.end()) return it->second;
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (tls_) {
      grpc::SslCredentialsOptions o;
      o.pem_root_certs = ca_.cert_pem;
      if (auto c = certs_.find(key); c != certs_.end()) {
        o.pem_cert_chain = c->second.cert_pem;
        o.pem_private_key = c->second.key_pem;
      }
      creds = grpc::SslCredentials(o);
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    return channels_[key] = grpc::CreateCustomChannel(address_, creds, args);
  }

  bool tls_;
  TempDir dir_;
  trust::Ed25519PrivateKey admin_key_ = *trust::Ed25519PrivateKey::FromSeed(std::string(32, 'a'));
  std::map<std::string, trust::Ed25519PrivateKey> keys_;
  trust::PemPair ca_;
  std::map<std::string, trust::PemPair> certs_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
  std::unique_ptr<ChildProcess> child_;
  std::string address_;
  uint64_t messages_ = 0;
};

// ---- the matrix ----

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : std::to_string(i);
}

// The parties a caller is, as the gate sees it.
uint32_t PartiesOf(const Party& p, bool tls) {
  switch (p.who) {
    case Who::kAgency:
      return policy::kAgency | (p.agency == "org.privacy" ? policy::kCompliance : 0u);
    case Who::kAdmin:
      return policy::kHubAdmin;
    case Who::kHubService:
      return tls ? policy::kHubService : 0u;  // dev mode: no way to claim it
    case Who::kNobody:
      return 0;
  }
  return 0;
}

// A refusal by the gate or the verifier's role check, as opposed to an
// object-level or validation answer of a core.
bool RefusedAtTheDoor(const Answer& a) {
  if (a.code == grpc::StatusCode::UNAUTHENTICATED || a.code == grpc::StatusCode::UNIMPLEMENTED)
    return true;
  if (a.code != grpc::StatusCode::PERMISSION_DENIED) return false;
  for (const char* marker : {"; the caller is ", "; the sender is ", "is not open to any caller",
                             " may not send ", "the connection is ", "does not hold the role"}) {
    if (absl::StrContains(a.message, marker)) return true;
  }
  return false;
}

struct Objects {
  std::string subject, subject2, consent1, consent2, break_glass;
  uint64_t stmarys_seq = 0;  // an event that concerns St Mary's only
};

class Matrix {
 public:
  explicit Matrix(MatrixHub* hub) : hub_(hub) {}

  // The objects every row is called with.
  void SetUp() {
    const Party admin = Parties()[7];
    for (const AgencySpec& a : Agencies()) {
      v1::RegisterAgency r;
      r.set_agency_id(a.id);
      *r.mutable_profile() = ProfileOf(a);
      r.mutable_initial_key()->set_key_id("k1");
      r.mutable_initial_key()->set_public_key(KeyOf(a.id));
      for (const auto& [user, role] : a.actors) {
        v1::ActorEntry* e = r.add_actors();
        e->set_user_id(user);
        e->add_roles(role);
      }
      Expect(Submit(admin, "DirectoryService", r, "hub-admin", names::kHubAdminRole));
    }
    for (const auto& [agency, slots] :
         std::vector<std::pair<std::string, int>>{{"org.foodbank", 2}, {"org.shelter", 5}}) {
      v1::ReportCapacity c;
      c.set_agency_id(agency);
      c.set_service("food-insecurity");
      c.set_open_slots(slots);
      Expect(Submit(AgencyParty(agency), "DirectoryService", c, "u-receiver", "receiver"));
    }
    objects_.subject = Resolve("000123");
    objects_.subject2 = Resolve("000124");
    objects_.consent1 = Grant(objects_.subject, {"contact", "social-needs"});
    objects_.consent2 = Grant(objects_.subject, {"contact"});
    // A referral by criteria: to the shelter (more slots), which declines for
    // capacity, so it goes on to the food bank: the shelter is its former
    // recipient.
    std::vector<v1::Section> sections;
    v1::ReferralManifest manifest = Manifest("r-1", "org.stmarys", /*by_criteria=*/true, &sections);
    v1::SubmitReferralRequest sent;
    sent.set_envelope(hub_->Sign(AgencyParty("org.stmarys"), manifest, "u-sender", "sender"));
    for (const v1::Section& sec : sections) *sent.add_sections() = sec;
    Answer a = Call(AgencyParty("org.stmarys"), "ReferralService", "Submit", sent);
    ASSERT_EQ(a.code, grpc::StatusCode::OK) << a.message;
    v1::SubmitReferralResponse submitted;
    submitted.ParseFromString(a.bytes);
    ASSERT_EQ(submitted.recipient_agency(), "org.shelter");
    v1::UpdateReferralStatus decline = Status("r-1", v1::TASK_REJECTED);
    decline.mutable_reason()->set_code("no-capacity");
    decline.mutable_reason()->set_text("full");
    v1::SubmitEnvelopeRequest req;
    req.set_envelope(hub_->Sign(AgencyParty("org.shelter"), decline, "u-receiver", "receiver"));
    a = Call(AgencyParty("org.shelter"), "ReferralService", "UpdateStatus", req);
    ASSERT_EQ(a.code, grpc::StatusCode::OK) << a.message;
    v1::GetReferralRequest get;
    get.set_referral("org.stmarys/r-1");
    a = Call(AgencyParty("org.stmarys"), "ReferralService", "Get", get);
    v1::ReferralView view;
    view.ParseFromString(a.bytes);
    ASSERT_EQ(view.recipient_agency(), "org.foodbank") << a.message;
    v1::BreakGlass bg = BreakGlassOn(objects_.subject);
    a = Submit(AgencyParty("org.er"), "ConsentService", bg, "u-emergency", "emergency");
    ASSERT_EQ(a.code, grpc::StatusCode::OK) << a.message;
    v1::SubmitEnvelopeResponse r;
    r.ParseFromString(a.bytes);
    objects_.break_glass = r.assigned_id();
    v1::CreateConsumerRequest consumer;
    consumer.set_consumer("intake");
    ASSERT_EQ(
        Call(AgencyParty("org.foodbank"), "NotificationService", "CreateConsumer", consumer).code,
        grpc::StatusCode::OK);
  }

  // Every (RPC, payload type) × every party.
  void Run() {
    std::map<std::string, std::string> rows;
    int checked = 0;
    for (const policy::Table* table : policy::AllTables()) {
      const google::protobuf::ServiceDescriptor* d = Descriptor(table->service());
      ASSERT_NE(d, nullptr) << table->service();
      for (int i = 0; i < d->method_count(); ++i) {
        const MethodDescriptor* m = d->method(i);
        std::vector<const Rule*> rules;
        for (const Rule& r : table->rules()) {
          if (r.method == m->name()) rules.push_back(&r);
        }
        ASSERT_FALSE(rules.empty())
            << table->service() << "." << m->name() << " has no entry in the policy table";
        for (const Rule* rule : rules) {
          std::string& row = rows[absl::StrCat(table->service(), ".", m->name(),
                                               rule->payload_type.empty() ? "" : " ",
                                               trust::ShortTypeName(rule->payload_type))];
          for (const Party& party : Parties()) {
            std::optional<Answer> a = CallRow(*table, m, *rule, party);
            if (!a.has_value()) {
              row += " -";
              continue;
            }
            ++checked;
            row += absl::StrCat(" ", CodeName(a->code));
          }
        }
      }
    }
    std::cout << "access matrix (" << (hub_->tls() ? "mTLS" : "dev mode") << "), " << checked
              << " answers; columns:";
    for (const Party& p : Parties()) std::cout << " " << p.name;
    std::cout << "\n";
    for (const auto& [rpc, answers] : rows) std::cout << "  " << rpc << ":" << answers << "\n";
    EXPECT_GT(checked, 400);
  }

  // Another agency's object and a missing one get the same answer.
  void ForeignIsMissing() {
    const Party third = AgencyParty("org.third");
    // Neither answer names another agency's records beyond what the caller
    // gave: not the recipients, not who recorded a consent.
    auto same = [&](const std::string& what, const Answer& foreign, const Answer& missing,
                    const std::string& real_id, const std::string& missing_id,
                    bool may_name_stmarys = false) {
      EXPECT_EQ(foreign.code, missing.code)
          << what << ": " << foreign.message << " | " << missing.message;
      EXPECT_EQ(absl::StrReplaceAll(foreign.message, {{real_id, missing_id}}), missing.message)
          << what;
      EXPECT_NE(foreign.code, grpc::StatusCode::OK) << what;
      for (const char* other : {"org.stmarys", "org.foodbank", "org.shelter", "u-sender"}) {
        if (may_name_stmarys && std::string(other) == "org.stmarys") continue;
        EXPECT_FALSE(absl::StrContains(foreign.message, other)) << what << ": " << foreign.message;
      }
    };
    {
      v1::ResolveSubjectRequest known, unknown;
      *known.add_identifiers() = Mrn("org.stmarys", "000123");
      *unknown.add_identifiers() = Mrn("org.stmarys", "999999");
      same("ResolveSubject", Call(third, "ConsentService", "ResolveSubject", known),
           Call(third, "ConsentService", "ResolveSubject", unknown), "000123", "999999",
           /*may_name_stmarys=*/true);
    }
    {
      v1::GetConsentRequest real, missing;
      real.set_consent_id(objects_.consent1);
      missing.set_consent_id("c-00000000000000000000");
      same("GetConsent", Call(third, "ConsentService", "GetConsent", real),
           Call(third, "ConsentService", "GetConsent", missing), objects_.consent1,
           missing.consent_id());
    }
    {
      v1::ListConsentsRequest real, missing;
      real.set_subject_id(objects_.subject);
      missing.set_subject_id("s-missing");
      same("ListConsents", Call(third, "ConsentService", "ListConsents", real),
           Call(third, "ConsentService", "ListConsents", missing), objects_.subject, "s-missing");
    }
    {
      v1::GetReferralRequest real, missing;
      real.set_referral("org.stmarys/r-1");
      missing.set_referral("org.stmarys/r-404");
      same("ReferralService.Get", Call(third, "ReferralService", "Get", real),
           Call(third, "ReferralService", "Get", missing), "org.stmarys/r-1", "org.stmarys/r-404",
           /*may_name_stmarys=*/true);
    }
    {
      v1::AuditInclusionRequest real, missing;
      real.set_seq(objects_.stmarys_seq);
      missing.set_seq(1'000'000);
      same("AuditService.Inclusion", Call(third, "AuditService", "Inclusion", real),
           Call(third, "AuditService", "Inclusion", missing), std::to_string(real.seq()),
           std::to_string(missing.seq()));
    }
    auto envelopes = [&](const std::string& what, const std::string& service, const Message& real,
                         const Message& missing, const std::string& real_id,
                         const std::string& missing_id) {
      same(what, Submit(third, service, real, "u-sender", "sender"),
           Submit(third, service, missing, "u-sender", "sender"), real_id, missing_id);
    };
    {
      v1::RevokeConsent real, missing;
      real.set_consent_id(objects_.consent1);
      real.set_reason("x");
      missing = real;
      missing.set_consent_id("c-00000000000000000000");
      envelopes("RevokeConsent", "ConsentService", real, missing, objects_.consent1,
                missing.consent_id());
    }
    {
      v1::GrantConsent real, missing;
      *real.mutable_consent() = NetworkConsent(objects_.subject, {"behavioral-health"});
      *missing.mutable_consent() = NetworkConsent("s-missing", {"behavioral-health"});
      envelopes("GrantConsent", "ConsentService", real, missing, objects_.subject, "s-missing");
    }
    {
      v1::LinkIdentifier real, missing;
      real.set_subject_id(objects_.subject);
      *real.mutable_identifier() = Mrn("org.third", "T-1");
      missing = real;
      missing.set_subject_id("s-missing");
      envelopes("LinkIdentifier", "ConsentService", real, missing, objects_.subject, "s-missing");
    }
    {
      v1::UpdateReferralStatus real = Status("r-1", v1::TASK_ACCEPTED);
      v1::UpdateReferralStatus missing = Status("r-404", v1::TASK_ACCEPTED);
      v1::SubmitEnvelopeRequest a, b;
      a.set_envelope(hub_->Sign(third, real, "u-receiver", "receiver"));
      b.set_envelope(hub_->Sign(third, missing, "u-receiver", "receiver"));
      same("UpdateStatus", Call(third, "ReferralService", "UpdateStatus", a),
           Call(third, "ReferralService", "UpdateStatus", b), "r-1", "r-404",
           /*may_name_stmarys=*/true);
    }
  }

 private:
  std::optional<Answer> CallRow(const policy::Table& table, const MethodDescriptor* m,
                                const Rule& rule, const Party& party) {
    const bool envelope = !rule.payload_type.empty();
    // In dev mode an envelope's signature is the identity: a connection
    // without one is not a party of its own.
    if (envelope && !hub_->tls() && party.who != Who::kAgency && party.who != Who::kAdmin)
      return std::nullopt;
    // With TLS a client without a certificate does not get past the
    // handshake (tls_integration_test).
    if (hub_->tls() && party.who == Who::kNobody) return std::nullopt;
    // The request; for an envelope, signed by the party with an actor whose
    // role the rule names if it has one.
    std::string user, role;
    std::string request;
    if (envelope) {
      ChooseActor(party, rule, &user, &role);
      std::unique_ptr<Message> wrapper = RequestFor(table, m, rule, party, user, role);
      if (wrapper == nullptr) {
        ADD_FAILURE() << "no request for " << table.service() << "." << m->name() << " "
                      << rule.payload_type << "; add one to the matrix";
        return std::nullopt;
      }
      request = wrapper->SerializeAsString();
    } else {
      std::unique_ptr<Message> req = RequestFor(table, m, rule, party, user, role);
      if (req == nullptr) {
        ADD_FAILURE() << "no request for " << table.service() << "." << m->name()
                      << "; add one to the matrix";
        return std::nullopt;
      }
      request = req->SerializeAsString();
    }
    const std::string method = absl::StrCat("/", m->service()->full_name(), "/", m->name());
    Answer a = hub_->Call(party, method, m->server_streaming(), request);
    bool admitted = (PartiesOf(party, hub_->tls()) & rule.parties) != 0;
    if (envelope) admitted = admitted && rule.actor_roles.contains(role);
    if (envelope && hub_->tls() && (party.who == Who::kHubService || party.who == Who::kNobody)) {
      admitted = false;  // the connection is not the envelope's sender
    }
    const std::string where = absl::StrCat(
        hub_->tls() ? "mTLS " : "dev ", table.service(), ".", m->name(), " ", rule.payload_type,
        " as ", party.name, " (", user, "/", role, "): ", CodeName(a.code), " ", a.message);
    if (table.service() == "LedgerService") {
      EXPECT_EQ(a.code, grpc::StatusCode::UNIMPLEMENTED)
          << "the ledger is never on the agencies' listener: " << where;
    } else if (admitted) {
      EXPECT_FALSE(RefusedAtTheDoor(a)) << "the table admits this call: " << where;
    } else {
      EXPECT_TRUE(a.code == grpc::StatusCode::PERMISSION_DENIED ||
                  a.code == grpc::StatusCode::UNAUTHENTICATED)
          << "the table does not admit this call: " << where;
    }
    return a;
  }

  static void ChooseActor(const Party& party, const Rule& rule, std::string* user,
                          std::string* role) {
    if (party.who == Who::kAdmin) {
      *user = "hub-admin";
      *role = names::kHubAdminRole;
      return;
    }
    const AgencySpec& spec = SpecOf(MatrixHub::SignerAgency(party));
    for (const auto& [u, r] : spec.actors) {
      if ((party.user.empty() || party.user == u) &&
          (party.user == u || rule.actor_roles.contains(r))) {
        *user = u;
        *role = r;
        return;
      }
    }
    for (const auto& [u, r] : spec.actors) {
      if (party.user.empty() || party.user == u) {
        *user = u;
        *role = r;
        return;
      }
    }
  }

  // The request for one row: realistic objects, and changes that leave the
  // objects the other rows need (destructive ones aim at org.spare or at the
  // second consent).
  std::unique_ptr<Message> RequestFor(const policy::Table& table, const MethodDescriptor* m,
                                      const Rule& rule, const Party& party, const std::string& user,
                                      const std::string& role) {
    if (!rule.payload_type.empty()) {
      std::vector<v1::Section> sections;
      std::unique_ptr<Message> payload = PayloadFor(rule.payload_type, party, &sections);
      if (payload == nullptr) return nullptr;
      const std::string env = hub_->Sign(party, *payload, user, role);
      std::unique_ptr<Message> req(google::protobuf::MessageFactory::generated_factory()
                                       ->GetPrototype(m->input_type())
                                       ->New());
      const google::protobuf::FieldDescriptor* f = m->input_type()->FindFieldByName("envelope");
      req->GetReflection()->SetString(req.get(), f, env);
      if (auto* s = m->input_type()->FindFieldByName("sections"); s != nullptr) {
        for (const v1::Section& sec : sections)
          req->GetReflection()->AddMessage(req.get(), s)->CopyFrom(sec);
      }
      return req;
    }
    return ReadFor(absl::StrCat(table.service(), ".", m->name()), party);
  }

  std::unique_ptr<Message> PayloadFor(const std::string& type, const Party& party,
                                      std::vector<v1::Section>* sections) {
    const std::string own = party.who == Who::kAdmin ? "org.spare" : MatrixHub::SignerAgency(party);
    const uint64_t n = ++serial_;
    namespace p = names::payload;
    if (type == p::kRegisterAgency) {
      auto r = std::make_unique<v1::RegisterAgency>();
      r->set_agency_id(absl::StrCat("org.new-", n));
      *r->mutable_profile() = ProfileOf(SpecOf("org.spare"));
      r->mutable_initial_key()->set_key_id("k1");
      r->mutable_initial_key()->set_public_key(KeyOf("org.spare"));
      return r;
    }
    if (type == p::kSetAgencyStatus) {
      auto r = std::make_unique<v1::SetAgencyStatus>();
      r->set_agency_id("org.spare");
      r->set_active(true);
      r->set_reason("matrix");
      return r;
    }
    if (type == p::kAddAgencyKey) {
      auto r = std::make_unique<v1::AddAgencyKey>();
      r->set_agency_id("org.spare");
      r->mutable_key()->set_key_id(absl::StrCat("k-", n));
      r->mutable_key()->set_public_key(KeyOf("org.spare"));
      return r;
    }
    if (type == p::kRevokeAgencyKey) {
      auto r = std::make_unique<v1::RevokeAgencyKey>();
      r->set_agency_id("org.spare");
      r->set_key_id("k-none");
      r->set_reason("matrix");
      return r;
    }
    if (type == p::kSetIdentifierAuthority) {
      auto r = std::make_unique<v1::SetIdentifierAuthority>();
      r->set_authority("us-or-medicaid");
      r->add_holders("org.stmarys");
      r->set_shared(true);
      r->set_reason("matrix");
      return r;
    }
    if (type == p::kUpdateAgencyProfile) {
      auto r = std::make_unique<v1::UpdateAgencyProfile>();
      r->set_agency_id(own);
      *r->mutable_profile() = ProfileOf(SpecOf(own));
      return r;
    }
    if (type == p::kSetActor) {
      auto r = std::make_unique<v1::SetActor>();
      r->set_agency_id(own);
      r->mutable_actor()->set_user_id(absl::StrCat("u-extra-", n));
      // A role the agency holds: its admin may give only those.
      r->mutable_actor()->add_roles(SpecOf(own).roles.front());
      return r;
    }
    if (type == p::kRemoveActor) {
      auto r = std::make_unique<v1::RemoveActor>();
      r->set_agency_id(own);
      r->set_user_id("u-none");
      return r;
    }
    if (type == p::kReportCapacity) {
      auto r = std::make_unique<v1::ReportCapacity>();
      r->set_agency_id(own);
      r->set_service("food-insecurity");
      r->set_open_slots(3);
      return r;
    }
    if (type == p::kLinkIdentifier) {
      auto r = std::make_unique<v1::LinkIdentifier>();
      r->set_subject_id(objects_.subject);
      *r->mutable_identifier() = Mrn(own, absl::StrCat("L-", n));
      return r;
    }
    if (type == p::kMergeSubjects || type == p::kUnmergeSubjects) {
      std::unique_ptr<Message> r;
      if (type == p::kMergeSubjects) {
        auto m = std::make_unique<v1::MergeSubjects>();
        m->set_surviving_subject_id(objects_.subject);
        m->set_merged_subject_id(objects_.subject2);
        m->set_reason("matrix");
        r = std::move(m);
      } else {
        auto u = std::make_unique<v1::UnmergeSubjects>();
        u->set_surviving_subject_id(objects_.subject);
        u->set_merged_subject_id(objects_.subject2);
        u->set_reason("matrix");
        r = std::move(u);
      }
      return r;
    }
    if (type == p::kGrantConsent) {
      auto r = std::make_unique<v1::GrantConsent>();
      *r->mutable_consent() = NetworkConsent(objects_.subject, {"contact"});
      return r;
    }
    if (type == p::kAmendConsent) {
      auto r = std::make_unique<v1::AmendConsent>();
      r->set_consent_id(objects_.consent2);
      *r->mutable_consent() = NetworkConsent(objects_.subject, {"contact"});
      r->set_reason("matrix");
      return r;
    }
    if (type == p::kRevokeConsent) {
      auto r = std::make_unique<v1::RevokeConsent>();
      r->set_consent_id(objects_.consent2);
      r->set_reason("matrix");
      return r;
    }
    if (type == p::kBreakGlass) {
      return std::make_unique<v1::BreakGlass>(BreakGlassOn(objects_.subject));
    }
    if (type == p::kReviewBreakGlass) {
      auto r = std::make_unique<v1::ReviewBreakGlass>();
      r->set_break_glass_id(objects_.break_glass);
      r->set_appropriate(true);
      r->set_notes("matrix");
      return r;
    }
    if (type == p::kReferralManifest) {
      return std::make_unique<v1::ReferralManifest>(
          Manifest(absl::StrCat("r-m", n), own, /*by_criteria=*/false, sections));
    }
    if (type == p::kUpdateReferralStatus) {
      return std::make_unique<v1::UpdateReferralStatus>(Status("r-1", v1::TASK_ACCEPTED));
    }
    if (type == p::kReferralMessage) {
      auto m = std::make_unique<v1::ReferralMessage>();
      m->set_sender_agency("org.stmarys");
      m->set_referral_id("r-1");
      v1::Section s;
      s.set_section_id("note");
      s.set_category("contact");
      s.set_media_type("text/plain");
      s.set_content("call after 5pm");
      sections->push_back(s);
      absl::StatusOr<std::vector<v1::SectionDigest>> digests =
          referral::SealSections(sections, referral::RandomBytes);
      EXPECT_TRUE(digests.ok()) << digests.status();
      for (const v1::SectionDigest& d : digests.value_or(std::vector<v1::SectionDigest>{}))
        *m->add_sections() = d;
      return m;
    }
    if (type == p::kSetWebhook) {
      auto r = std::make_unique<v1::SetWebhook>();
      r->set_agency_id(own);
      r->set_url("https://hooks.example.org/careloop");  // disabled: never called
      r->set_enabled(false);
      return r;
    }
    if (type == p::kReplayDeadLetters) {
      auto r = std::make_unique<v1::ReplayDeadLetters>();
      r->set_agency_id(own);
      r->set_from_seq(1);
      r->set_to_seq(2);
      return r;
    }
    return nullptr;
  }

  std::unique_ptr<Message> ReadFor(const std::string& rpc, const Party& party) {
    const std::string own = party.who == Who::kAgency ? party.agency : "org.stmarys";
    if (rpc == "LedgerService.Append") return std::make_unique<v1::AppendRequest>();
    if (absl::StartsWith(rpc, "LedgerService.")) {
      const MethodDescriptor* m = Descriptor("LedgerService")->FindMethodByName(rpc.substr(14));
      return std::unique_ptr<Message>(google::protobuf::MessageFactory::generated_factory()
                                          ->GetPrototype(m->input_type())
                                          ->New());
    }
    if (rpc == "DirectoryService.GetReceipt") {
      auto r = std::make_unique<v1::GetEnvelopeReceiptRequest>();
      r->set_sender_agency(party.who == Who::kAdmin ? names::kHubAgency : own);
      r->set_message_id("m-1");
      return r;
    }
    if (rpc == "DirectoryService.GetAgency") {
      auto r = std::make_unique<v1::GetAgencyRequest>();
      r->set_agency_id("org.foodbank");
      return r;
    }
    if (rpc == "DirectoryService.SearchAgencies") {
      auto r = std::make_unique<v1::SearchAgenciesRequest>();
      r->set_service("food-insecurity");
      return r;
    }
    if (rpc == "ConsentService.ResolveSubject") {
      auto r = std::make_unique<v1::ResolveSubjectRequest>();
      *r->add_identifiers() = Mrn("org.stmarys", "000123");
      return r;
    }
    if (rpc == "ConsentService.GetConsent") {
      auto r = std::make_unique<v1::GetConsentRequest>();
      r->set_consent_id(objects_.consent1);
      return r;
    }
    if (rpc == "ConsentService.ListConsents") {
      auto r = std::make_unique<v1::ListConsentsRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    if (rpc == "ConsentService.PreviewDisclosure") {
      auto r = std::make_unique<v1::PreviewDisclosureRequest>();
      *r->mutable_subject() = Mrn("org.stmarys", "000123");
      r->set_recipient_agency("org.foodbank");
      r->set_purpose("care-coordination");
      r->add_categories("contact");
      return r;
    }
    if (rpc == "ConsentService.Check") {
      auto r = std::make_unique<v1::CheckConsentRequest>();
      r->set_subject_id(objects_.subject);
      r->set_recipient_agency("org.foodbank");
      r->set_purpose("care-coordination");
      r->add_categories("contact");
      return r;
    }
    if (rpc == "ConsentService.DisclosureReport" || rpc == "AuditService.Report") {
      auto r = std::make_unique<v1::DisclosureReportRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    if (rpc == "ConsentService.ListBreakGlass")
      return std::make_unique<v1::ListBreakGlassRequest>();
    if (rpc == "ReferralService.Get") {
      auto r = std::make_unique<v1::GetReferralRequest>();
      r->set_referral("org.stmarys/r-1");
      return r;
    }
    if (rpc == "ReferralService.Sent" || rpc == "ReferralService.Inbox")
      return std::make_unique<v1::ListReferralsRequest>();
    if (rpc == "NotificationService.CreateConsumer") {
      auto r = std::make_unique<v1::CreateConsumerRequest>();
      r->set_consumer(absl::StrCat("c-", ++serial_));
      return r;
    }
    if (rpc == "NotificationService.Subscribe") {
      auto r = std::make_unique<v1::SubscribeRequest>();
      r->set_consumer("intake");
      return r;
    }
    if (rpc == "NotificationService.Ack") {
      auto r = std::make_unique<v1::AckRequest>();
      r->set_consumer("intake");
      r->set_up_to_seq(1);
      return r;
    }
    if (rpc == "NotificationService.Status") return std::make_unique<v1::DeliveryStatusRequest>();
    if (rpc == "NotificationService.ListDeadLetters") {
      auto r = std::make_unique<v1::ListDeadLettersRequest>();
      r->set_agency_id(party.who == Who::kAgency ? own : "org.foodbank");
      return r;
    }
    if (rpc == "NotificationService.TestWebhook") return std::make_unique<v1::TestWebhookRequest>();
    if (rpc == "NotificationService.WebhookKey") return std::make_unique<v1::WebhookKeyRequest>();
    if (rpc == "AuditService.Query") {
      auto r = std::make_unique<v1::AuditQueryRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    if (rpc == "AuditService.Trail") {
      auto r = std::make_unique<v1::TrailRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    if (rpc == "AuditService.Head") return std::make_unique<v1::AuditHeadRequest>();
    if (rpc == "AuditService.Consistency") {
      auto r = std::make_unique<v1::AuditConsistencyRequest>();
      r->set_size1(1);
      return r;
    }
    if (rpc == "AuditService.Inclusion") {
      auto r = std::make_unique<v1::AuditInclusionRequest>();
      r->set_seq(objects_.stmarys_seq);
      return r;
    }
    if (rpc == "AuditService.Export") {
      auto r = std::make_unique<v1::ExportRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    if (rpc == "AuditService.Access") {
      auto r = std::make_unique<v1::AccessRequest>();
      r->set_referral("org.stmarys/r-1");
      return r;
    }
    if (rpc == "AuditService.Figures") return std::make_unique<v1::FiguresRequest>();
    if (rpc == "AuditService.FhirAuditEvents") {
      auto r = std::make_unique<v1::FhirAuditEventsRequest>();
      r->set_subject_id(objects_.subject);
      return r;
    }
    return nullptr;
  }

  // ---- helpers ----

  static const google::protobuf::ServiceDescriptor* Descriptor(const std::string& service) {
    for (const google::protobuf::FileDescriptor* f :
         {v1::AppendRequest::descriptor()->file(), v1::RegisterAgency::descriptor()->file(),
          v1::GrantConsent::descriptor()->file(), v1::ReferralManifest::descriptor()->file(),
          v1::SetWebhook::descriptor()->file(), v1::AuditQueried::descriptor()->file()}) {
      if (const auto* s = f->FindServiceByName(service); s != nullptr) return s;
    }
    return nullptr;
  }

  static Party AgencyParty(const std::string& id) { return {id, Who::kAgency, id, ""}; }

  std::string KeyOf(const std::string& agency) { return public_keys_.at(agency); }

  Answer Call(const Party& party, const std::string& service, const std::string& method,
              const Message& req) {
    const MethodDescriptor* m = Descriptor(service)->FindMethodByName(method);
    return hub_->Call(party, absl::StrCat("/", m->service()->full_name(), "/", method),
                      m->server_streaming(), req.SerializeAsString());
  }

  Answer Submit(const Party& party, const std::string& service, const Message& payload,
                const std::string& user, const std::string& role) {
    v1::SubmitEnvelopeRequest req;
    req.set_envelope(hub_->Sign(party, payload, user, role));
    return Call(party, service, "Submit", req);
  }

  static void Expect(const Answer& a) { ASSERT_EQ(a.code, grpc::StatusCode::OK) << a.message; }

  static v1::Identifier Mrn(const std::string& agency, const std::string& value) {
    v1::Identifier id;
    id.set_authority(agency + "/mrn");
    id.set_value(value);
    return id;
  }

  std::string Resolve(const std::string& mrn) {
    v1::ResolveSubjectRequest req;
    *req.add_identifiers() = Mrn("org.stmarys", mrn);
    Answer a = Call(AgencyParty("org.stmarys"), "ConsentService", "ResolveSubject", req);
    EXPECT_EQ(a.code, grpc::StatusCode::OK) << a.message;
    v1::ResolveSubjectResponse r;
    r.ParseFromString(a.bytes);
    return r.subject_id();
  }

  static v1::Consent NetworkConsent(const std::string& subject,
                                    const std::vector<std::string>& categories) {
    v1::Consent c;
    c.set_subject_id(subject);
    c.mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
    c.mutable_provision()->set_permit(true);
    c.mutable_provision()->add_recipients()->set_network(true);
    c.mutable_provision()->add_purposes("care-coordination");
    for (const std::string& cat : categories) c.mutable_provision()->add_categories(cat);
    c.mutable_evidence()->set_sha256(std::string(32, '\x42'));
    c.mutable_evidence()->set_media_type("application/pdf");
    return c;
  }

  std::string Grant(const std::string& subject, const std::vector<std::string>& categories) {
    v1::GrantConsent g;
    *g.mutable_consent() = NetworkConsent(subject, categories);
    Answer a = Submit(AgencyParty("org.stmarys"), "ConsentService", g, "u-sender", "sender");
    EXPECT_EQ(a.code, grpc::StatusCode::OK) << a.message;
    v1::SubmitEnvelopeResponse r;
    r.ParseFromString(a.bytes);
    v1::EventHeader h;
    h.ParseFromString(r.receipt().header_bytes());
    objects_.stmarys_seq = h.seq();
    return r.assigned_id();
  }

  static v1::BreakGlass BreakGlassOn(const std::string& subject) {
    v1::BreakGlass bg;
    bg.set_subject_id(subject);
    bg.add_categories("behavioral-health");
    bg.set_purpose("emergency-treatment");
    bg.set_reason("unresponsive on arrival");
    return bg;
  }

  static v1::UpdateReferralStatus Status(const std::string& id, v1::TaskStatus to) {
    v1::UpdateReferralStatus u;
    u.set_sender_agency("org.stmarys");
    u.set_referral_id(id);
    u.set_status(to);
    return u;
  }

  // A referral manifest from `from` about its own patient, with its sections.
  static v1::ReferralManifest Manifest(const std::string& id, const std::string& from,
                                       bool by_criteria, std::vector<v1::Section>* sections) {
    for (auto [sid, cat, text] : std::vector<std::tuple<const char*, const char*, const char*>>{
             {"contact", "contact", "phone 555-0100"},
             {"needs", "social-needs", "food insecurity screen positive"},
             {"bh", "behavioral-health", "PHQ-9 of 14"}}) {
      v1::Section s;
      s.set_section_id(sid);
      s.set_category(cat);
      s.set_media_type("text/plain");
      s.set_content(text);
      sections->push_back(s);
    }
    v1::ReferralManifest m;
    m.set_referral_id(id);
    *m.mutable_subject() = Mrn(from, "000123");
    m.set_service_category("food-insecurity");
    m.set_reason("discharge: food insecurity");
    m.set_priority(v1::URGENT);
    m.set_purpose("care-coordination");
    if (by_criteria) {
      m.mutable_routing()->mutable_criteria()->set_postal_code("97201");
    } else {
      m.mutable_routing()->set_recipient_agency("org.foodbank");
    }
    absl::StatusOr<std::vector<v1::SectionDigest>> digests =
        referral::SealSections(sections, referral::RandomBytes);
    EXPECT_TRUE(digests.ok()) << digests.status();
    for (const v1::SectionDigest& d : digests.value_or(std::vector<v1::SectionDigest>{}))
      *m.add_sections() = d;
    return m;
  }

 public:
  std::map<std::string, std::string> public_keys_;

 private:
  MatrixHub* hub_;
  Objects objects_;
  uint64_t serial_ = 0;
};

void RunMatrix(bool tls) {
  MatrixHub hub(tls);
  ASSERT_TRUE(hub.Start().ok());
  Matrix matrix(&hub);
  matrix.public_keys_ = hub.PublicKeys();
  ASSERT_NO_FATAL_FAILURE(matrix.SetUp());
  matrix.ForeignIsMissing();
  matrix.Run();
}

TEST(AccessMatrix, DevMode) { RunMatrix(/*tls=*/false); }
TEST(AccessMatrix, MutualTls) { RunMatrix(/*tls=*/true); }

}  // namespace
}  // namespace careloop::testing
