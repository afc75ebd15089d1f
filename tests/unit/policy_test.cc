// The authorization tables (services/policy): complete against the services'
// descriptors and the payload-type registry, in step with docs/SECURITY.md,
// and closed by default.
#include "services/policy/policy.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "careloop/v1/audit.grpc.pb.h"
#include "careloop/v1/consent.grpc.pb.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "careloop/v1/ledger.grpc.pb.h"
#include "careloop/v1/notification.grpc.pb.h"
#include "careloop/v1/referral.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "services/names/names.h"

namespace careloop::policy {
namespace {

// Touching one message of each proto file links it, so the generated pool
// holds its services and payload types.
const bool kLinked = [] {
  for (const google::protobuf::Descriptor* d :
       {v1::AppendRequest::descriptor(), v1::RegisterAgency::descriptor(),
        v1::GrantConsent::descriptor(), v1::ReferralManifest::descriptor(),
        v1::SetWebhook::descriptor(), v1::AuditQueried::descriptor()}) {
    (void)d->file();
  }
  return true;
}();

const google::protobuf::ServiceDescriptor* Descriptor(const std::string& service) {
  EXPECT_TRUE(kLinked);
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("careloop.v1." +
                                                                               service);
}

// An RPC carries a signed envelope when its request has an `envelope` field.
bool CarriesEnvelope(const google::protobuf::MethodDescriptor* m) {
  return m->input_type()->FindFieldByName("envelope") != nullptr;
}

TEST(PolicyTables, EveryRpcOfEveryServiceHasAnEntryAndEveryEntryAnRpc) {
  ASSERT_EQ(AllTables().size(), 6u);
  for (const Table* t : AllTables()) {
    const google::protobuf::ServiceDescriptor* d = Descriptor(t->service());
    ASSERT_NE(d, nullptr) << t->service();
    for (int i = 0; i < d->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = d->method(i);
      int rules = 0;
      for (const Rule& r : t->rules()) {
        if (r.method != m->name()) continue;
        ++rules;
        EXPECT_EQ(r.payload_type.empty(), !CarriesEnvelope(m)) << t->service() << "." << r.method;
      }
      EXPECT_GT(rules, 0) << t->service() << "." << m->name() << " is missing from the table";
    }
    for (const Rule& r : t->rules()) {
      EXPECT_NE(d->FindMethodByName(r.method), nullptr)
          << t->service() << "." << r.method << " is no RPC";
      EXPECT_FALSE(r.object_rule.empty()) << r.method;
    }
  }
}

TEST(PolicyTables, EverySignedPayloadTypeIsAcceptedByExactlyOneRpc) {
  std::map<std::string, int> accepted;
  for (const Table* t : AllTables()) {
    for (const Rule& r : t->rules()) {
      if (r.payload_type.empty()) continue;
      ++accepted[r.payload_type];
      EXPECT_FALSE(r.actor_roles.empty()) << r.payload_type;
      EXPECT_NE(
          google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(r.payload_type),
          nullptr)
          << r.payload_type;
    }
  }
  for (std::string_view type : names::payload::All()) {
    EXPECT_EQ(accepted[std::string(type)], 1) << type;
  }
  EXPECT_EQ(accepted.size(), names::payload::All().size());
}

TEST(PolicyTables, TheLedgerIsForTheHubsServicesOnly) {
  for (const Rule& r : LedgerTable().rules()) EXPECT_EQ(r.parties, kHubService) << r.method;
  for (const Table* t : AllTables()) {
    if (t == &LedgerTable()) continue;
    for (const Rule& r : t->rules()) EXPECT_EQ(r.parties & kHubService, 0u) << r.method;
  }
}

TEST(PolicyTables, SecurityMdShowsExactlyTheseTables) {
  std::ifstream in(std::string(CARELOOP_SOURCE_DIR) + "/docs/SECURITY.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const std::string begin = "<!-- policy:begin (generated: careloop policy --markdown) -->\n";
  const std::string end = "<!-- policy:end -->";
  const size_t b = doc.find(begin);
  const size_t e = doc.find(end);
  ASSERT_NE(b, std::string::npos) << "docs/SECURITY.md has no policy markers";
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(doc.substr(b + begin.size(), e - b - begin.size()), Markdown())
      << "docs/SECURITY.md and services/policy/tables.cc disagree; regenerate the table with "
         "`careloop policy --markdown`";
}

// A directory with one agency of each kind the gate tells apart.
class FakeAgencies final : public directory::Agencies {
 public:
  FakeAgencies() {
    Add("org.plain", {"sender"}, true);
    Add("org.privacy", {"compliance"}, true);
    Add("org.gone", {"compliance"}, false);
  }
  std::optional<v1::AgencyRecord> Get(absl::string_view id) const override {
    auto it = records_.find(std::string(id));
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<v1::AgencyRecord> All() const override { return {}; }
  const directory::HubAdmin& admin() const override { return admin_; }
  directory::AuthorityUse Authority(absl::string_view, absl::string_view) const override {
    return {};
  }
  absl::StatusOr<std::optional<trust::AgencyView>> FindAgency(absl::string_view) override {
    return std::nullopt;
  }

 private:
  void Add(const std::string& id, std::vector<std::string> roles, bool active) {
    v1::AgencyRecord r;
    r.set_agency_id(id);
    r.set_active(active);
    for (const std::string& role : roles) r.mutable_profile()->add_roles(role);
    records_[id] = r;
  }
  std::map<std::string, v1::AgencyRecord> records_;
  directory::HubAdmin admin_;
};

TEST(Gate, RefusesWhatTheTableDoesNotListAndWhoItDoesNotName) {
  FakeAgencies agencies;
  Gate consent(&ConsentTable(), &agencies, /*tls=*/true);
  EXPECT_EQ(consent.Admit(Caller::Agency("org.plain"), "Bogus").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(consent.Admit(Caller::None(), "GetConsent").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(consent.Admit(Caller::Agency("org.plain"), "ResolveSubject").ok());
  // Compliance reads: the compliance agency only; not an admin, not the hub's
  // services, not a suspended compliance agency, not an unknown agency.
  EXPECT_TRUE(consent.Admit(Caller::Agency("org.privacy"), "DisclosureReport").ok());
  for (const Caller& c :
       {Caller::Agency("org.plain"), Caller::HubAdmin("hub-admin"), Caller::HubService(),
        Caller::Agency("org.gone"), Caller::Agency("org.unknown")}) {
    EXPECT_EQ(consent.Admit(c, "DisclosureReport").code(), absl::StatusCode::kPermissionDenied)
        << c.ForLog();
  }
  Gate ledger(&LedgerTable(), nullptr, true);
  EXPECT_TRUE(ledger.Admit(Caller::HubService(), "Tail").ok());
  for (const Caller& c : {Caller::Agency("org.privacy"), Caller::HubAdmin("hub-admin")}) {
    EXPECT_EQ(ledger.Admit(c, "Tail").code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(ledger.Admit(c, "Append").code(), absl::StatusCode::kPermissionDenied);
  }
}

TEST(Gate, AnEnvelopesSenderMustBeTheConnectionWithTls) {
  FakeAgencies agencies;
  v1::Envelope e;
  e.set_payload_type(names::payload::kGrantConsent);
  e.set_sender_agency("org.plain");
  e.mutable_actor()->set_user_id("u-1");
  e.mutable_actor()->set_role("sender");
  e.set_key_id("k1");
  e.set_message_id("m-1");
  e.set_created_unix_nanos(1);
  e.set_payload("x");
  e.set_signature(std::string(64, 's'));
  const std::string bytes = e.SerializeAsString();
  Gate tls(&ConsentTable(), &agencies, true);
  EXPECT_TRUE(tls.AdmitEnvelope(Caller::Agency("org.plain"), "Submit", bytes).ok());
  EXPECT_EQ(tls.AdmitEnvelope(Caller::Agency("org.privacy"), "Submit", bytes).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(tls.AdmitEnvelope(Caller::HubService(), "Submit", bytes).code(),
            absl::StatusCode::kPermissionDenied);
  // A payload type the RPC does not take.
  e.set_payload_type(names::payload::kRegisterAgency);
  EXPECT_EQ(tls.AdmitEnvelope(Caller::Agency("org.plain"), "Submit", e.SerializeAsString()).code(),
            absl::StatusCode::kInvalidArgument);
  // The hub admin signs as "hub": never a consent.
  e.set_payload_type(names::payload::kMergeSubjects);
  e.set_sender_agency(names::kHubAgency);
  e.mutable_actor()->set_user_id("hub-admin");
  Gate dev(&ConsentTable(), &agencies, false);
  EXPECT_EQ(dev.AdmitEnvelope(Caller::None(), "Submit", e.SerializeAsString()).code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace careloop::policy
