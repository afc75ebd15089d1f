// The directory core on a real ledger (RocksDB in a temp dir) with an injected
// clock: onboarding by the hub admin, agency-scoped changes, key rotation and
// revocation at an instant, suspension, idempotent retries (also after a
// restart and past the skew), and rejected envelopes writing nothing.
#include "services/directory/directory.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "storage/local_ledger.h"
#include "storage/receipt.h"
#include "tests/support/test_env.h"

namespace careloop::directory {
namespace {

using careloop::testing::AgencyRequest;
using careloop::testing::ReceiptRequest;
using careloop::testing::TempDir;
using careloop::testing::TestSigner;
using careloop::testing::VerifierFor;
using careloop::testing::Who;

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_signer_ = TestSigner();
    admin_key_ = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0a'));
    k1_ = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b'));
    k2_ = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0c'));
    ASSERT_TRUE(Start().ok());
  }

  absl::Status Start() {
    storage::LedgerOptions o;
    o.dir = dir_.Sub("ledger");
    o.signer = log_signer_.get();
    o.clock = &clock_;
    ASSIGN_OR_RETURN(ledger_, storage::LocalLedger::Open(o));
    HubAdmin admin;
    admin.public_key = admin_key_->public_key().raw();
    state_ = std::make_unique<DirectoryState>(admin);
    runner_ = std::make_unique<storage::ProjectionRunner>(ledger_.get(), state_.get());
    RETURN_IF_ERROR(runner_->Start());
    RETURN_IF_ERROR(runner_->WaitFor(ledger_->size(), absl::Seconds(30)));
    core_ = std::make_unique<DirectoryCore>(ledger_.get(), state_.get(), runner_.get(), &clock_);
    return absl::OkStatus();
  }
  void Stop() {
    core_.reset();
    runner_.reset();
    state_.reset();
    ASSERT_TRUE(ledger_->Close().ok());
    ledger_.reset();
  }

  std::string Envelope(const google::protobuf::Message& payload, const std::string& sender,
                       const std::string& user, const std::string& role, const std::string& key_id,
                       const trust::Ed25519PrivateKey& key, const std::string& message_id) {
    v1::Envelope e;
    e.set_payload(payload.SerializeAsString());
    e.set_payload_type(payload.GetDescriptor()->full_name());
    e.set_sender_agency(sender);
    e.mutable_actor()->set_user_id(user);
    e.mutable_actor()->set_display_name("someone");
    e.mutable_actor()->set_role(role);
    e.set_key_id(key_id);
    e.set_created_unix_nanos(absl::ToUnixNanos(clock_.Now()));
    e.set_message_id(message_id);
    return *trust::SignEnvelope(e, key);
  }
  std::string AsHub(const google::protobuf::Message& p, const std::string& id) {
    return Envelope(p, kHubAgency, "hub-admin", kHubAdminRole, "hub-admin-1", *admin_key_, id);
  }
  std::string AsAgency(const google::protobuf::Message& p, const std::string& agency,
                       const std::string& id, const std::string& user = "u-admin",
                       const std::string& role = kAgencyAdminRole, const std::string& key_id = "k1",
                       const trust::Ed25519PrivateKey* key = nullptr) {
    return Envelope(p, agency, user, role, key_id, key ? *key : *k1_, id);
  }

  v1::RegisterAgency Registration(const std::string& id, bool confidential = false) {
    v1::RegisterAgency r;
    r.set_agency_id(id);
    r.mutable_profile()->set_display_name("Food Bank of the Valley");
    r.mutable_profile()->set_kind(v1::COMMUNITY_AGENCY);
    r.mutable_profile()->add_services("food-insecurity");
    r.mutable_profile()->add_roles("receiver");
    r.mutable_profile()->mutable_address()->set_postal_code("97201");
    r.mutable_profile()->mutable_address()->set_confidential(confidential);
    r.mutable_initial_key()->set_key_id("k1");
    r.mutable_initial_key()->set_public_key(k1_->public_key().raw());
    v1::ActorEntry* a = r.add_actors();
    a->set_user_id("u-admin");
    a->add_roles("admin");
    return r;
  }

  void ExpectRefusedWritingNothing(const std::string& bytes, absl::StatusCode code,
                                   const std::string& fragment) {
    uint64_t before = ledger_->size();
    auto r = core_->Submit(bytes);
    ASSERT_FALSE(r.ok()) << fragment;
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(std::string(r.status().message()).find(fragment), std::string::npos) << r.status();
    EXPECT_EQ(ledger_->size(), before) << "a rejected envelope wrote something";
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<trust::Ed25519HeadSigner> log_signer_;
  std::optional<trust::Ed25519PrivateKey> admin_key_, k1_, k2_;
  std::unique_ptr<storage::LocalLedger> ledger_;
  std::unique_ptr<DirectoryState> state_;
  std::unique_ptr<storage::ProjectionRunner> runner_;
  std::unique_ptr<DirectoryCore> core_;
};

TEST_F(DirectoryTest, TheHubAdminRegistersAnAgencyAndTheReceiptVerifies) {
  std::string bytes = AsHub(Registration("org.foodbank"), "reg-1");
  auto receipt = core_->Submit(bytes);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  auto header = storage::VerifyReceipt(*receipt, *VerifierFor(*log_signer_), bytes);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->stream(), "agency/org.foodbank");
  EXPECT_EQ(header->type(), "RegisterAgency");
  auto record = core_->GetAgency(AgencyRequest("org.foodbank"), Who("org.foodbank"));
  ASSERT_TRUE(record.ok()) << record.status();
  // The directory is for the hub's agencies: an id it does not know, and
  // nobody, are refused by the table before anything is read.
  EXPECT_EQ(core_->GetAgency(AgencyRequest("org.foodbank"), Who("org.other")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(core_->GetAgency(AgencyRequest("org.foodbank"), Who("")).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(record->active());
  EXPECT_EQ(record->keys_size(), 1);
  EXPECT_EQ(record->profile().services(0), "food-insecurity");
  // Registering it again is refused, and writes nothing.
  ExpectRefusedWritingNothing(AsHub(Registration("org.foodbank"), "reg-2"),
                              absl::StatusCode::kAlreadyExists, "already registered");
  // Only the hub admin registers.
  ExpectRefusedWritingNothing(AsAgency(Registration("org.other"), "org.foodbank", "reg-3"),
                              absl::StatusCode::kPermissionDenied,
                              "may not send careloop.v1.RegisterAgency");
}

TEST_F(DirectoryTest, AnAgencyChangesOnlyItselfAndOnlyThroughItsAdmin) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.shelter"), "r2")).ok());
  v1::SetActor add;
  add.set_agency_id("org.foodbank");
  add.mutable_actor()->set_user_id("u-case-1");
  add.mutable_actor()->add_roles("receiver");
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a1")).ok());
  EXPECT_EQ(state_->Get("org.foodbank")->actors_size(), 2);
  // Another agency's admin may not touch it.
  ExpectRefusedWritingNothing(AsAgency(add, "org.shelter", "a2"),
                              absl::StatusCode::kPermissionDenied,
                              "agency org.shelter may not change agency org.foodbank");
  // A receiver-role actor of the agency itself may not either.
  add.mutable_actor()->set_user_id("u-case-2");
  ExpectRefusedWritingNothing(AsAgency(add, "org.foodbank", "a3", "u-case-1", "receiver"),
                              absl::StatusCode::kPermissionDenied,
                              "the role receiver may not send");
  v1::RemoveActor rm;
  rm.set_agency_id("org.foodbank");
  rm.set_user_id("u-nobody");
  ExpectRefusedWritingNothing(AsAgency(rm, "org.foodbank", "a4"), absl::StatusCode::kNotFound,
                              "no actor u-nobody");
}

TEST_F(DirectoryTest, AnAgencysAdminGivesOnlyTheRolesTheAgencyHolds) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  // The food bank receives; its admin may add receivers and admins...
  v1::SetActor add;
  add.set_agency_id("org.foodbank");
  add.mutable_actor()->set_user_id("u-case-1");
  add.mutable_actor()->add_roles("receiver");
  add.mutable_actor()->add_roles("admin");
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a1")).ok());
  // ...but not give anyone compliance or emergency powers the hub admin
  // never granted the agency.
  for (const char* role : {"compliance", "emergency", "sender"}) {
    add.mutable_actor()->clear_roles();
    add.mutable_actor()->add_roles(role);
    ExpectRefusedWritingNothing(AsAgency(add, "org.foodbank", absl::StrCat("a-", role)),
                                absl::StatusCode::kPermissionDenied,
                                absl::StrCat("does not hold the role '", role, "'"));
  }
  // Nor grant the agency itself a role through its profile.
  v1::UpdateAgencyProfile upd;
  upd.set_agency_id("org.foodbank");
  *upd.mutable_profile() = Registration("org.foodbank").profile();
  upd.mutable_profile()->add_roles("compliance");
  ExpectRefusedWritingNothing(AsAgency(upd, "org.foodbank", "p1"),
                              absl::StatusCode::kPermissionDenied, "granted by the hub admin");
  // The hub admin may do both.
  ASSERT_TRUE(core_->Submit(AsHub(upd, "p2")).ok());
  add.mutable_actor()->clear_roles();
  add.mutable_actor()->add_roles("compliance");
  EXPECT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a2")).ok());
}

TEST_F(DirectoryTest, ADeactivatedActorIsKeptButRefused) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  v1::SetActor add;
  add.set_agency_id("org.foodbank");
  add.mutable_actor()->set_user_id("u-intake");
  add.mutable_actor()->set_display_name("Intake");
  add.mutable_actor()->add_roles("receiver");
  add.mutable_actor()->add_roles("admin");
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a1")).ok());
  v1::UpdateAgencyProfile upd;
  upd.set_agency_id("org.foodbank");
  *upd.mutable_profile() = Registration("org.foodbank").profile();
  ASSERT_TRUE(core_->Submit(AsAgency(upd, "org.foodbank", "p1", "u-intake", "admin")).ok());
  add.mutable_actor()->set_inactive(true);
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a2")).ok());
  // Still in the record, with its roles, marked inactive...
  const v1::AgencyRecord r = *state_->Get("org.foodbank");
  ASSERT_EQ(r.actors_size(), 2);
  EXPECT_TRUE(r.actors(1).inactive());
  EXPECT_EQ(r.actors(1).roles_size(), 2);
  // ...and nothing it signs is accepted any more.
  ExpectRefusedWritingNothing(AsAgency(upd, "org.foodbank", "p2", "u-intake", "admin"),
                              absl::StatusCode::kPermissionDenied,
                              "actor u-intake of agency org.foodbank is deactivated");
  // Active again, it signs again.
  add.mutable_actor()->set_inactive(false);
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a3")).ok());
  EXPECT_TRUE(core_->Submit(AsAgency(upd, "org.foodbank", "p3", "u-intake", "admin")).ok());
}

TEST_F(DirectoryTest, KeyRotationAndRevocationAtAnInstant) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  v1::AddAgencyKey add;
  add.set_agency_id("org.foodbank");
  add.mutable_key()->set_key_id("k2");
  add.mutable_key()->set_public_key(k2_->public_key().raw());
  ASSERT_TRUE(core_->Submit(AsHub(add, "k2-add")).ok());
  // Both keys work at once: no downtime.
  v1::UpdateAgencyProfile upd;
  upd.set_agency_id("org.foodbank");
  *upd.mutable_profile() = Registration("org.foodbank").profile();
  upd.mutable_profile()->add_languages("es");
  std::string signed_with_k1 = AsAgency(upd, "org.foodbank", "u1");
  ASSERT_TRUE(core_->Submit(signed_with_k1).ok());
  upd.mutable_profile()->add_languages("vi");
  ASSERT_TRUE(
      core_->Submit(AsAgency(upd, "org.foodbank", "u2", "u-admin", "admin", "k2", &*k2_)).ok());
  // Revoke k1 now (T): envelopes received from T on fail.
  clock_.Advance(absl::Minutes(1));
  const absl::Time t = clock_.Now();
  v1::RevokeAgencyKey revoke;
  revoke.set_agency_id("org.foodbank");
  revoke.set_key_id("k1");
  revoke.set_reason("laptop lost");
  ASSERT_TRUE(core_->Submit(AsHub(revoke, "k1-revoke")).ok());
  ExpectRefusedWritingNothing(AsAgency(upd, "org.foodbank", "u3"),
                              absl::StatusCode::kUnauthenticated, "was revoked at");
  // The envelope accepted before T still verifies against the key history.
  trust::RpcPolicy policy = DirectoryPolicy(absl::Minutes(5));
  class NoneSeen final : public trust::MessageLog {
   public:
    absl::StatusOr<std::optional<trust::SeenMessage>> Find(absl::string_view,
                                                           absl::string_view) override {
      return std::optional<trust::SeenMessage>();
    }
  } none;
  EXPECT_TRUE(
      trust::VerifyEnvelope(signed_with_k1, policy, *state_, none, t - absl::Minutes(1)).ok());
  EXPECT_FALSE(trust::VerifyEnvelope(signed_with_k1, policy, *state_, none, t).ok());
  // Revoking it twice is refused.
  ExpectRefusedWritingNothing(AsHub(revoke, "k1-revoke-again"),
                              absl::StatusCode::kFailedPrecondition, "already revoked");
}

TEST_F(DirectoryTest, ASuspendedAgencyIsRefused) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  v1::SetAgencyStatus s;
  s.set_agency_id("org.foodbank");
  s.set_active(false);
  s.set_reason("contract ended");
  ASSERT_TRUE(core_->Submit(AsHub(s, "suspend-1")).ok());
  v1::RemoveActor rm;
  rm.set_agency_id("org.foodbank");
  rm.set_user_id("u-admin");
  ExpectRefusedWritingNothing(AsAgency(rm, "org.foodbank", "x1"),
                              absl::StatusCode::kPermissionDenied, "is suspended");
}

TEST_F(DirectoryTest, RetriesGetTheOriginalReceiptAlsoAfterARestartAndPastTheSkew) {
  std::string bytes = AsHub(Registration("org.foodbank"), "reg-1");
  auto first = core_->Submit(bytes);
  ASSERT_TRUE(first.ok());
  const uint64_t size = ledger_->size();
  auto again = core_->Submit(bytes);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->header_bytes(), first->header_bytes());
  EXPECT_EQ(ledger_->size(), size) << "a retry writes nothing";
  Stop();
  clock_.Advance(absl::Hours(2));  // far past the 5 min skew
  ASSERT_TRUE(Start().ok());
  EXPECT_TRUE(state_->Get("org.foodbank").has_value()) << "the state is rebuilt from the ledger";
  auto after = core_->Submit(bytes);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->header_bytes(), first->header_bytes());
  auto fetched = core_->GetReceipt(ReceiptRequest(kHubAgency, "reg-1"), Who("admin:ops"));
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->header_bytes(), first->header_bytes());
  // The same id with other content.
  ExpectRefusedWritingNothing(AsHub(Registration("org.other"), "reg-1"),
                              absl::StatusCode::kAlreadyExists,
                              "already used for a different envelope");
  EXPECT_EQ(
      core_->GetReceipt(ReceiptRequest(kHubAgency, "reg-404"), Who("admin:ops")).status().code(),
      absl::StatusCode::kNotFound);
}

TEST_F(DirectoryTest, BadEnvelopesAndBadChangesWriteNothing) {
  ExpectRefusedWritingNothing("garbage", absl::StatusCode::kInvalidArgument, "envelope:");
  ExpectRefusedWritingNothing(AsHub(Registration("org.foodbank"), "bad id with spaces"),
                              absl::StatusCode::kInvalidArgument, "message_id");
  v1::RegisterAgency no_kind = Registration("org.foodbank");
  no_kind.mutable_profile()->set_kind(v1::AGENCY_KIND_UNSPECIFIED);
  ExpectRefusedWritingNothing(AsHub(no_kind, "m1"), absl::StatusCode::kInvalidArgument,
                              "needs a kind");
  v1::RegisterAgency short_key = Registration("org.foodbank");
  short_key.mutable_initial_key()->set_public_key("short");
  ExpectRefusedWritingNothing(AsHub(short_key, "m2"), absl::StatusCode::kInvalidArgument,
                              "32 raw Ed25519 bytes");
  v1::RegisterAgency bad_id = Registration("Org_Bad");
  ExpectRefusedWritingNothing(AsHub(bad_id, "m3"), absl::StatusCode::kInvalidArgument, "agency id");
  v1::RegisterAgency hub = Registration("hub");
  ExpectRefusedWritingNothing(AsHub(hub, "m4"), absl::StatusCode::kInvalidArgument, "reserved");
  v1::RegisterAgency bad_role = Registration("org.foodbank");
  bad_role.mutable_actors(0)->add_roles("superuser");
  ExpectRefusedWritingNothing(AsHub(bad_role, "m5"), absl::StatusCode::kInvalidArgument,
                              "unknown role");
  // A forged hub envelope (another key).
  ExpectRefusedWritingNothing(Envelope(Registration("org.foodbank"), kHubAgency, "hub-admin",
                                       kHubAdminRole, "hub-admin-1", *k1_, "m6"),
                              absl::StatusCode::kUnauthenticated, "bad signature");
  EXPECT_EQ(ledger_->size(), 0u);
}

TEST_F(DirectoryTest, ServiceCodesComeFromTheVocabulary) {
  v1::RegisterAgency r = Registration("org.foodbank");
  r.mutable_profile()->add_services("free-pizza");
  ExpectRefusedWritingNothing(AsHub(r, "m1"), absl::StatusCode::kInvalidArgument,
                              "unknown service code 'free-pizza'");
  // A code the configuration adds is accepted.
  std::set<std::string> codes = DefaultServiceCodes();
  codes.insert("free-pizza");
  core_ = std::make_unique<DirectoryCore>(ledger_.get(), state_.get(), runner_.get(), &clock_,
                                          absl::Minutes(5), codes);
  EXPECT_TRUE(core_->Submit(AsHub(r, "m2")).ok());
}

TEST_F(DirectoryTest, CapacityReportsAndSearchByOpenCapacity) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r1")).ok());
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.pantry"), "r2")).ok());
  v1::SetActor add;
  add.set_agency_id("org.foodbank");
  add.mutable_actor()->set_user_id("u-intake");
  add.mutable_actor()->add_roles("receiver");
  ASSERT_TRUE(core_->Submit(AsAgency(add, "org.foodbank", "a1")).ok());
  const uint64_t agency_version = state_->Get("org.foodbank")->version();
  v1::ReportCapacity report;
  report.set_agency_id("org.foodbank");
  report.set_service("food-insecurity");
  report.set_open_slots(3);
  auto receipt = core_->Submit(AsAgency(report, "org.foodbank", "c1", "u-intake", "receiver"));
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  v1::EventHeader h;
  ASSERT_TRUE(h.ParseFromString(receipt->header_bytes()));
  EXPECT_EQ(h.stream(), "capacity/org.foodbank");
  EXPECT_EQ(state_->Get("org.foodbank")->version(), agency_version)
      << "capacity has its own stream";
  v1::SearchAgenciesRequest q;
  q.set_service("food-insecurity");
  q.set_with_open_capacity(true);
  auto open = core_->Search(q, Who("org.pantry"));
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].agency_id(), "org.foodbank");
  EXPECT_EQ((*open)[0].capacity(0).open_slots(), 3u);
  report.set_open_slots(0);
  ASSERT_TRUE(core_->Submit(AsAgency(report, "org.foodbank", "c2", "u-intake", "receiver")).ok());
  EXPECT_TRUE(core_->Search(q, Who("org.pantry"))->empty());
  q.set_with_open_capacity(false);
  EXPECT_EQ(core_->Search(q, Who("org.pantry"))->size(), 2u);
  // Only for a service it offers, and only for itself.
  report.set_service("legal-aid");
  ExpectRefusedWritingNothing(AsAgency(report, "org.foodbank", "c3", "u-intake", "receiver"),
                              absl::StatusCode::kInvalidArgument,
                              "does not offer the service 'legal-aid'");
  report.set_service("food-insecurity");
  report.set_agency_id("org.pantry");
  ExpectRefusedWritingNothing(AsAgency(report, "org.foodbank", "c4", "u-intake", "receiver"),
                              absl::StatusCode::kPermissionDenied,
                              "may not change agency org.pantry");
}

TEST_F(DirectoryTest, AConfidentialAddressIsShownOnlyToTheAgencyAndTheHub) {
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.shelter", /*confidential=*/true), "r1")).ok());
  ASSERT_TRUE(core_->Submit(AsHub(Registration("org.foodbank"), "r2")).ok());
  auto other = core_->GetAgency(AgencyRequest("org.shelter"), Who("org.foodbank"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(other->profile().address().postal_code().empty());
  EXPECT_TRUE(other->profile().address().confidential());
  EXPECT_EQ(core_->GetAgency(AgencyRequest("org.shelter"), Who("org.shelter"))
                ->profile()
                .address()
                .postal_code(),
            "97201");
  EXPECT_EQ(core_->GetAgency(AgencyRequest("org.shelter"), Who("admin:ops"))
                ->profile()
                .address()
                .postal_code(),
            "97201");
}

}  // namespace
}  // namespace careloop::directory
