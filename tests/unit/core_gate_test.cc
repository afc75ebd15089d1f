// The policy is met in the cores, not only at the gRPC edge: every read a
// service serves, called in process as the agency edge calls it, admits its
// caller by the service's table first. The calls are generated from the
// tables (a new read without an entry here fails the first test), and a
// refusal must be the gate's own (its message), so a core that forgot to
// admit and refused later for another reason still fails.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/audit/audit_core.h"
#include "services/notification/notifications.h"
#include "services/policy/policy.h"
#include "tests/support/referral_fixture.h"

namespace careloop {
namespace {

using testing::Who;

class CoreGateTest : public testing::ReferralFixture {
 protected:
  void SetUp() override {
    ReferralFixture::SetUp();
    audit_ = std::make_unique<audit::AuditCore>(env_.ledger(), env_.directory_state(),
                                                env_.consent(), &env_.clock());
    notes_ =
        std::make_unique<notification::NotificationCore>(env_.ledger(), core_.get(), &env_.clock());
    ASSERT_TRUE(notes_->Start().ok());
    hooks_ = std::make_unique<notification::Webhooks>(
        env_.ledger(), notes_.get(), env_.directory_state(), &env_.clock(),
        *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0d')),
        notification::NewCurlPoster(notification::OutboundPolicy{true, {}}),
        notification::WebhookOptions{});
    notifications_ = std::make_unique<notification::Notifications>(notes_.get(), hooks_.get(),
                                                                   env_.directory_state());
  }
  void TearDown() override {
    notifications_.reset();
    hooks_.reset();
    notes_.reset();
  }

  using Call = std::function<absl::Status(const policy::Caller&)>;
  template <typename Fn>
  static Call Of(Fn fn) {
    return [fn](const policy::Caller& c) { return fn(c).status(); };
  }

  // "<Service>.<RPC>" -> the in-process entry point, with an empty request.
  std::map<std::string, Call> Reads() {
    consent::ConsentCore* consent = env_.consent();
    directory::DirectoryCore* dir = env_.directory();
    referral::ReferralCore* ref = core_.get();
    audit::AuditCore* au = audit_.get();
    notification::Notifications* n = notifications_.get();
    std::map<std::string, Call> m;
    m["DirectoryService.GetReceipt"] = Of([dir](auto& c) { return dir->GetReceipt({}, c); });
    m["DirectoryService.GetAgency"] = Of([dir](auto& c) { return dir->GetAgency({}, c); });
    m["DirectoryService.SearchAgencies"] = Of([dir](auto& c) { return dir->Search({}, c); });
    m["ConsentService.ResolveSubject"] = Of([consent](auto& c) { return consent->Resolve({}, c); });
    m["ConsentService.PreviewDisclosure"] =
        Of([consent](auto& c) { return consent->PreviewDisclosure({}, c); });
    m["ConsentService.GetConsent"] = Of([consent](auto& c) { return consent->GetConsent("", c); });
    m["ConsentService.ListConsents"] =
        Of([consent](auto& c) { return consent->ListConsents({}, c); });
    m["ConsentService.Check"] = Of([consent](auto& c) { return consent->Check({}, c); });
    m["ConsentService.DisclosureReport"] =
        Of([consent](auto& c) { return consent->Report({}, c); });
    m["ConsentService.ListBreakGlass"] =
        Of([consent](auto& c) { return consent->ListBreakGlass({}, c); });
    m["ReferralService.Get"] = Of([ref](auto& c) { return ref->Get({}, c); });
    m["ReferralService.Sent"] = Of([ref](auto& c) { return ref->Sent({}, c); });
    m["ReferralService.Inbox"] = Of([ref](auto& c) { return ref->Inbox({}, c); });
    m["NotificationService.CreateConsumer"] = Of([n](auto& c) { return n->CreateConsumer({}, c); });
    m["NotificationService.Subscribe"] = Of([n](auto& c) { return n->Subscribe({}, c); });
    m["NotificationService.Ack"] = Of([n](auto& c) { return n->Ack({}, c); });
    m["NotificationService.Status"] = Of([n](auto& c) { return n->Status(c); });
    m["NotificationService.ListDeadLetters"] =
        Of([n](auto& c) { return n->ListDeadLetters({}, c); });
    m["NotificationService.TestWebhook"] = Of([n](auto& c) { return n->TestWebhook(c); });
    m["NotificationService.WebhookKey"] = Of([n](auto& c) { return n->WebhookKey(c); });
    m["AuditService.Query"] = Of([au](auto& c) { return au->Query({}, c); });
    m["AuditService.Trail"] = Of([au](auto& c) { return au->Trail({}, c); });
    m["AuditService.Report"] = Of([au](auto& c) { return au->Report({}, c); });
    m["AuditService.Head"] = Of([au](auto& c) { return au->Head({}, c); });
    m["AuditService.Consistency"] = Of([au](auto& c) { return au->Consistency({}, c); });
    m["AuditService.Inclusion"] = Of([au](auto& c) { return au->Inclusion({}, c); });
    m["AuditService.Export"] = Of([au](auto& c) { return au->Export({}, c); });
    m["AuditService.FhirAuditEvents"] = Of([au](auto& c) { return au->FhirAuditEvents({}, c); });
    m["AuditService.Access"] = Of([au](auto& c) { return au->Access({}, c); });
    m["AuditService.Figures"] = Of([au](auto& c) { return au->Figures({}, c); });
    return m;
  }

  std::unique_ptr<audit::AuditCore> audit_;
  std::unique_ptr<notification::NotificationCore> notes_;
  std::unique_ptr<notification::Webhooks> hooks_;
  std::unique_ptr<notification::Notifications> notifications_;
};

// Every read of every table but the ledger's (internal, on its own socket,
// served by the ledger itself) has an in-process entry point here, and
// nothing here is missing from the tables.
TEST_F(CoreGateTest, EveryReadOfEveryTableHasAnEntryPoint) {
  std::map<std::string, Call> reads = Reads();
  size_t listed = 0;
  for (const policy::Table* t : policy::AllTables()) {
    if (t->service() == "LedgerService") continue;
    for (const policy::Rule& r : t->rules()) {
      if (!r.payload_type.empty()) continue;
      const std::string name = absl::StrCat(t->service(), ".", r.method);
      EXPECT_TRUE(reads.contains(name)) << name << " has no in-process entry point in this test";
      ++listed;
    }
  }
  EXPECT_EQ(reads.size(), listed) << "an entry point here is not in any table";
}

// Each party a rule does not admit is refused by the gate, before anything
// is read or written; the parties are the table's, so the test follows it.
TEST_F(CoreGateTest, EveryCoreReadRefusesWhomItsTableDoesNotAdmit) {
  struct Party {
    const char* id;
    uint32_t bits;  // what the gate makes of it
  };
  const Party parties[] = {
      {"", 0},
      {"org.nobody", 0},  // not an agency of this hub
      {"hub", policy::kHubService},
      {"admin:ops", policy::kHubAdmin},
      {"org.shelter", policy::kAgency},
      {"org.compliance", policy::kAgency | policy::kCompliance},
  };
  int refusals = 0;
  for (auto& [name, call] : Reads()) {
    const std::string service(name.substr(0, name.find('.')));
    const std::string method(name.substr(name.find('.') + 1));
    const policy::Table* table = nullptr;
    for (const policy::Table* t : policy::AllTables()) {
      if (t->service() == service) table = t;
    }
    ASSERT_NE(table, nullptr) << name;
    const policy::Rule* rule = table->Find(method, "");
    ASSERT_NE(rule, nullptr) << name;
    for (const Party& p : parties) {
      if ((p.bits & rule->parties) != 0) continue;
      const uint64_t size = env_.ledger()->size();
      const absl::Status s = call(Who(p.id));
      const bool by_gate =
          (absl::IsPermissionDenied(s) && absl::StartsWith(s.message(), name + " is for")) ||
          (absl::IsUnauthenticated(s) && absl::StrContains(s.message(), "names no identity"));
      EXPECT_TRUE(by_gate) << name << " as '" << p.id << "': " << s;
      EXPECT_EQ(env_.ledger()->size(), size) << name << " as '" << p.id << "' wrote";
      ++refusals;
    }
  }
  EXPECT_GT(refusals, 100) << "the matrix is not empty";
}

}  // namespace
}  // namespace careloop
