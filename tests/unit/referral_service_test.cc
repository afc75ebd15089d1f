// The referral core on a real ledger with the real directory and consent
// cores: a hospital sends a referral in sections; consent decides per section
// for the recipient; the recipient sees only what it may and checks it with
// only the sender's public key; duplicates, tampering and strangers are
// refused writing nothing; racing accepts and racing revocations lose by
// precondition; routing by criteria records its reasons.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <latch>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "services/referral/lifecycle.h"
#include "services/referral/referral_core.h"
#include "services/referral/referral_grpc_service.h"
#include "services/referral/routing.h"
#include "tests/support/forwarding_ledger.h"
#include "tests/support/referral_fixture.h"

namespace careloop::referral {
namespace {

using careloop::testing::AgencyRequest;
using careloop::testing::ConsentEnv;
using careloop::testing::Who;

using careloop::testing::ReferralFixture;

using AsyncAnswer = std::optional<absl::StatusOr<v1::SubmitReferralResponse>>;

// Waits for SubmitAsync's answer (it may come on the ledger's thread).
AsyncAnswer SubmitAsyncAndWait(ReferralCore* core, const v1::SubmitReferralRequest& req) {
  absl::Notification answered;
  AsyncAnswer out;
  core->SubmitAsync(req, [&](AsyncAnswer a) {
    out = std::move(a);
    answered.Notify();
  });
  answered.WaitForNotification();
  return out;
}

// A real ledger whose appends can be held back and then let through in
// order: to plan two submissions before either commits.
class HeldLedger final : public careloop::testing::ForwardingLedger {
 public:
  using ForwardingLedger::ForwardingLedger;
  void Hold() {
    absl::MutexLock l(&mu_);
    held_ = true;
  }
  void Release() {
    std::vector<std::pair<v1::AppendRequest, storage::AppendCallback>> queued;
    {
      absl::MutexLock l(&mu_);
      held_ = false;
      queued.swap(queued_);
    }
    for (auto& [req, done] : queued) inner()->AppendAsync(std::move(req), std::move(done));
  }
  size_t held() {
    absl::MutexLock l(&mu_);
    return queued_.size();
  }
  // Waits until `n` appends are held.
  void AwaitHeld(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queued_.size() >= n; };
    mu_.Await(absl::Condition(&enough));
  }

  void AppendAsync(v1::AppendRequest request, storage::AppendCallback done) override {
    {
      absl::MutexLock l(&mu_);
      if (held_) {
        queued_.emplace_back(std::move(request), std::move(done));
        return;
      }
    }
    inner()->AppendAsync(std::move(request), std::move(done));
  }

 private:
  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<v1::AppendRequest, storage::AppendCallback>> queued_ ABSL_GUARDED_BY(mu_);
};

class ReferralTest : public ReferralFixture {};

TEST_F(ReferralTest, ConsentDecidesPerSectionAndTheRecipientSeesOnlyThat) {
  auto sent = core_->Submit(Referral("r-1"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->referral(), "org.stmarys/r-1");
  EXPECT_EQ(sent->recipient_agency(), "org.foodbank");
  ASSERT_EQ(sent->withheld_size(), 1);
  EXPECT_EQ(sent->withheld(0).section_id(), "bh");
  EXPECT_EQ(Count("DisclosureRecorded"), 2) << "one per permitted section";

  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  auto seen = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->status(), v1::TASK_REQUESTED);
  ASSERT_EQ(seen->sections_size(), 2);
  ASSERT_EQ(seen->withheld_size(), 1);
  EXPECT_TRUE(seen->subject_id().empty()) << "the hub's subject id is the sender's business";
  // The recipient checks the sender's signature and each section it got.
  v1::Envelope e;
  ASSERT_TRUE(e.ParseFromString(seen->manifest_envelope()));
  auto key =
      *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b'));  // the agencies' test key
  EXPECT_TRUE(key.public_key().Verify(trust::SigningInput(e), e.signature()));
  v1::ReferralManifest m;
  ASSERT_TRUE(m.ParseFromString(e.payload()));
  std::vector<v1::Section> got(seen->sections().begin(), seen->sections().end());
  EXPECT_TRUE(VerifySections(m.sections(), got, /*require_all=*/false).ok());
  for (const auto& s : got) EXPECT_NE(s.category(), "behavioral-health");
  // Reads record nothing new; the sender sees everything.
  EXPECT_EQ(Count("DisclosureRecorded"), 2);
  auto own = core_->Get(get, Who("org.stmarys"));
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->sections_size(), 3);
  EXPECT_EQ(own->subject_id(), subject_);
  // Anybody else: denied, as for a referral that does not exist.
  EXPECT_EQ(core_->Get(get, Who("org.shelter")).status().code(),
            absl::StatusCode::kPermissionDenied);
  get.set_referral("org.stmarys/r-404");
  EXPECT_EQ(core_->Get(get, Who("org.foodbank")).status().code(),
            absl::StatusCode::kPermissionDenied);
  // After a revocation the recipient's reads withhold what it no longer may see.
  v1::RevokeConsent revoke;
  revoke.set_consent_id(consent_id_);
  revoke.set_reason("withdrawn");
  ASSERT_TRUE(env_.consent()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
  get.set_referral("org.stmarys/r-1");
  auto after = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->sections_size(), 0);
  EXPECT_EQ(after->withheld_size(), 3);
}

TEST_F(ReferralTest, BadSubmissionsAreRefusedWritingNothing) {
  auto refused = [&](v1::SubmitReferralRequest req, absl::StatusCode code,
                     const std::string& fragment) {
    uint64_t before = env_.ledger()->size();
    ExpectRefusedWritingNothing(core_->Submit(req).status(), code, fragment);
    EXPECT_EQ(env_.ledger()->size(), before) << fragment;
    // The path gRPC's threads take refuses it the same way, at once.
    AsyncAnswer inline_answer = SubmitAsyncAndWait(core_.get(), req);
    ASSERT_TRUE(inline_answer.has_value()) << fragment;
    ExpectRefusedWritingNothing(inline_answer->status(), code, fragment);
    EXPECT_EQ(env_.ledger()->size(), before) << fragment;
  };
  auto tampered = Referral("r-1");
  (*tampered.mutable_sections(1)->mutable_content())[0] ^= 1;
  refused(tampered, absl::StatusCode::kInvalidArgument, "section needs does not match");
  auto missing = Referral("r-1");
  missing.mutable_sections()->RemoveLast();
  refused(missing, absl::StatusCode::kInvalidArgument, "missing");
  refused(Referral("r-1", "org.nowhere"), absl::StatusCode::kNotFound, "no agency");
  // A person the hub has not met: a refused referral leaves no subject behind.
  refused(Referral("r-1", "org.clinic", "new-mrn"), absl::StatusCode::kFailedPrecondition,
          "does not offer");
  v1::ResolveSubjectRequest probe;
  probe.add_identifiers()->set_authority("org.stmarys/mrn");
  probe.mutable_identifiers(0)->set_value("new-mrn");
  EXPECT_FALSE(env_.consent()->PlanResolve(probe, "org.stmarys")->creation.events().empty())
      << "still unknown";
  // Sent: the subject is created in the same append, and nothing is disclosed
  // (nobody recorded a consent for a person the hub just met).
  auto fresh = core_->Submit(Referral("r-new", "org.foodbank", "new-mrn"));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->withheld_size(), 3);
  EXPECT_TRUE(env_.consent()->PlanResolve(probe, "org.stmarys")->creation.events().empty());
  refused(Referral("r-1", "org.clinic"), absl::StatusCode::kFailedPrecondition,
          "does not offer food-insecurity");
  auto bad_sig = Referral("r-1");
  (*bad_sig.mutable_envelope())[bad_sig.envelope().size() - 2] ^= 1;
  refused(bad_sig, absl::StatusCode::kUnauthenticated, "signature");
  // A receiver-only agency may not send.
  v1::ReferralManifest m;
  m.set_referral_id("r-9");
  v1::SubmitReferralRequest wrong;
  wrong.set_envelope(env_.Sign(m, "org.foodbank", "receiver"));
  refused(wrong, absl::StatusCode::kPermissionDenied, "");
}

TEST_F(ReferralTest, DuplicatesAreRefusedUnlessForcedAndRetriesGetTheOriginal) {
  auto first = Referral("r-1");
  auto sent = core_->Submit(first);
  ASSERT_TRUE(sent.ok()) << sent.status();
  // The same envelope again: the original receipt, nothing new.
  uint64_t size = env_.ledger()->size();
  auto retry = core_->Submit(first);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->receipt().header_bytes(), sent->receipt().header_bytes());
  EXPECT_EQ(env_.ledger()->size(), size);
  // A second open referral for the same person and need.
  auto dup = core_->Submit(Referral("r-2"));
  ExpectRefusedWritingNothing(dup.status(), absl::StatusCode::kAlreadyExists,
                              "org.stmarys/r-1 is open");
  EXPECT_EQ(env_.ledger()->size(), size);
  auto forced = Referral("r-2");
  forced.set_force_reason("second household member");
  EXPECT_TRUE(core_->Submit(forced).ok());
  // Once the first is closed, a new one is no duplicate.
  ASSERT_TRUE(core_
                  ->UpdateStatus(
                      Update("r-1", v1::TASK_REJECTED, "org.foodbank", "receiver", "no-capacity"))
                  .ok());
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-2", v1::TASK_CANCELLED, "org.stmarys", "sender", "duplicate"))
          .ok());
  EXPECT_TRUE(core_->Submit(Referral("r-3")).ok());
}

TEST_F(ReferralTest, TheInlinePathAnswersFromTheLedgerAndLeavesRetriesAndRacesToSubmit) {
  HeldLedger held(env_.ledger());
  ReferralCore inline_core(&held, env_.directory_state(), env_.runner(), env_.consent(),
                           &env_.clock());
  // A new referral: answered once its append is durable, with its receipt.
  auto first = Referral("r-1");
  AsyncAnswer sent = SubmitAsyncAndWait(&inline_core, first);
  ASSERT_TRUE(sent.has_value());
  ASSERT_TRUE(sent->ok()) << sent->status();
  EXPECT_EQ((*sent)->referral(), "org.stmarys/r-1");
  EXPECT_EQ((*sent)->recipient_agency(), "org.foodbank");
  EXPECT_EQ((*sent)->withheld_size(), 1);  // behavioural health: not in the consent
  // The full path answers a retry with that same receipt.
  auto retry = core_->Submit(first);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->receipt().header_bytes(), (*sent)->receipt().header_bytes());
  EXPECT_EQ(Count("ReferralSubmitted"), 1);

  // A retry on the inline path is left to Submit, writing nothing.
  const uint64_t size = env_.ledger()->size();
  AsyncAnswer again = SubmitAsyncAndWait(&inline_core, first);
  EXPECT_FALSE(again.has_value());
  EXPECT_EQ(env_.ledger()->size(), size);

  // Two referrals for another person and the same need, both planned before
  // either commits: the first lands, the second loses by the duplicate
  // guard's precondition and is left to Submit, which refuses it by name.
  ASSERT_TRUE(env_.Grant(ConsentEnv::NetworkConsent(*env_.NewSubject("000777"), {"contact"})).ok());
  held.Hold();
  absl::Notification first_done, second_done;
  AsyncAnswer a, b;
  inline_core.SubmitAsync(Referral("r-10", "org.foodbank", "000777"), [&](AsyncAnswer x) {
    a = std::move(x);
    first_done.Notify();
  });
  auto second = Referral("r-11", "org.foodbank", "000777");
  inline_core.SubmitAsync(second, [&](AsyncAnswer x) {
    b = std::move(x);
    second_done.Notify();
  });
  EXPECT_EQ(held.held(), 2u);
  EXPECT_FALSE(first_done.HasBeenNotified());
  held.Release();
  first_done.WaitForNotification();
  second_done.WaitForNotification();
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->ok()) << a->status();
  EXPECT_FALSE(b.has_value()) << "the lost race goes to the full path";
  EXPECT_EQ(Count("ReferralSubmitted"), 2);
  ExpectRefusedWritingNothing(core_->Submit(second).status(), absl::StatusCode::kAlreadyExists,
                              "org.stmarys/r-10 is open");
  EXPECT_EQ(Count("ReferralSubmitted"), 2);
}

// The same over gRPC, as careloopd serves it with its ledger in process: a
// real server on a free loopback port, submissions taken on gRPC's threads;
// a retry and a lost race reach the pool's Submit and are answered from it.
TEST_F(ReferralTest, OverGrpcRetriesAndLostRacesAreAnsweredByTheFullPath) {
  HeldLedger held(env_.ledger());
  ReferralCore inline_core(&held, env_.directory_state(), env_.runner(), env_.consent(),
                           &env_.clock());
  ReferralGrpcService service(&inline_core, env_.directory_state(), /*tls=*/false,
                              /*submit_inline=*/true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto stub = v1::ReferralService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  auto submit = [&](const v1::SubmitReferralRequest& req, v1::SubmitReferralResponse* resp) {
    grpc::ClientContext ctx;
    return stub->Submit(&ctx, req, resp);
  };

  auto first = Referral("r-1");
  v1::SubmitReferralResponse sent, retried;
  grpc::Status st = submit(first, &sent);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(sent.referral(), "org.stmarys/r-1");
  const uint64_t size = env_.ledger()->size();
  st = submit(first, &retried);  // the same bytes again
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.receipt().header_bytes(), sent.receipt().header_bytes());
  EXPECT_EQ(retried.referral(), "org.stmarys/r-1");
  EXPECT_EQ(env_.ledger()->size(), size);

  auto bad_sig = Referral("r-2");
  (*bad_sig.mutable_envelope())[bad_sig.envelope().size() - 2] ^= 1;
  v1::SubmitReferralResponse refused;
  st = submit(bad_sig, &refused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_EQ(env_.ledger()->size(), size);

  // Two referrals for another person and the same need, both planned
  // before either commits.
  ASSERT_TRUE(env_.Grant(ConsentEnv::NetworkConsent(*env_.NewSubject("000777"), {"contact"})).ok());
  held.Hold();
  const auto r10 = Referral("r-10", "org.foodbank", "000777");
  const auto r11 = Referral("r-11", "org.foodbank", "000777");
  grpc::ClientContext ctx10, ctx11;
  v1::SubmitReferralResponse resp10, resp11;
  grpc::Status st10, st11;
  absl::Notification done10, done11;
  stub->async()->Submit(&ctx10, &r10, &resp10, [&](grpc::Status s) {
    st10 = s;
    done10.Notify();
  });
  held.AwaitHeld(1);  // in this order
  stub->async()->Submit(&ctx11, &r11, &resp11, [&](grpc::Status s) {
    st11 = s;
    done11.Notify();
  });
  held.AwaitHeld(2);
  held.Release();
  done10.WaitForNotification();
  done11.WaitForNotification();
  EXPECT_TRUE(st10.ok()) << st10.error_message();
  EXPECT_EQ(st11.error_code(), grpc::StatusCode::ALREADY_EXISTS) << st11.error_message();
  EXPECT_NE(st11.error_message().find("org.stmarys/r-10 is open"), std::string::npos)
      << st11.error_message();
  EXPECT_EQ(Count("ReferralSubmitted"), 2);
  server->Shutdown();
}

TEST_F(ReferralTest, AChangeMadeAgainstAnOlderVersionIsRefused) {
  // The FHIR API's If-Match, enforced by the hub under the same
  // precondition as the append: a change signed against version v applies
  // only while the referral is at v.
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  absl::StatusOr<v1::ReferralView> seen = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(seen.ok()) << seen.status();
  const uint64_t v = seen->version();
  const uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core_
                                  ->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank",
                                                        "receiver", "", "", v - 1))
                                  .status(),
                              absl::StatusCode::kAborted, "read it again");
  EXPECT_EQ(env_.ledger()->size(), size);
  EXPECT_TRUE(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank", "receiver", "", "", v))
          .ok());
}

TEST_F(ReferralTest, TheLifecycleIsEnforcedPerParty) {
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.stmarys", "sender")).status(),
      absl::StatusCode::kPermissionDenied, "only the recipient");
  ExpectRefusedWritingNothing(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.shelter", "receiver")).status(),
      absl::StatusCode::kPermissionDenied, "is visible to agency org.shelter");
  ExpectRefusedWritingNothing(
      core_->UpdateStatus(Update("r-1", v1::TASK_COMPLETED, "org.foodbank", "receiver", "", "x"))
          .status(),
      absl::StatusCode::kFailedPrecondition, "the referral is requested");
  EXPECT_EQ(env_.ledger()->size(), size);
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank", "receiver")).ok());
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-1", v1::TASK_IN_PROGRESS, "org.foodbank", "receiver")).ok());
  ExpectRefusedWritingNothing(
      core_->UpdateStatus(Update("r-1", v1::TASK_COMPLETED, "org.foodbank", "receiver")).status(),
      absl::StatusCode::kInvalidArgument, "outcome");
  ASSERT_TRUE(core_
                  ->UpdateStatus(Update("r-1", v1::TASK_COMPLETED, "org.foodbank", "receiver", "",
                                        "weekly food box"))
                  .ok());
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  auto view = core_->Get(get, Who("org.stmarys"));
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->status(), v1::TASK_COMPLETED);
  EXPECT_EQ(view->outcome().provided(), "weekly food box");
  std::vector<v1::TaskStatus> seen;
  for (const auto& h : view->history()) seen.push_back(h.status());
  EXPECT_EQ(seen, (std::vector<v1::TaskStatus>{v1::TASK_STATUS_UNSPECIFIED, v1::TASK_REQUESTED,
                                               v1::TASK_ACCEPTED, v1::TASK_IN_PROGRESS,
                                               v1::TASK_COMPLETED}));
  // Sent and inbox.
  auto sent = core_->Sent({}, Who("org.stmarys"));
  ASSERT_TRUE(sent.ok());
  ASSERT_EQ(sent->referrals_size(), 1);
  EXPECT_EQ(sent->referrals(0).status(), v1::TASK_COMPLETED);
  EXPECT_EQ(core_->Inbox({}, Who("org.foodbank"))->referrals_size(), 1);
  EXPECT_EQ(core_->Inbox({}, Who("org.shelter"))->referrals_size(), 0);
  EXPECT_EQ(core_->Sent({}, Who("org.foodbank"))->referrals_size(), 0);
}

TEST_F(ReferralTest, OfTwoRacingAcceptsExactlyOneWins) {
  for (int i = 0; i < 30; ++i) {
    const std::string id = absl::StrCat("r-race-", i);
    auto req = Referral(id);
    req.set_force_reason("race test");
    ASSERT_TRUE(core_->Submit(req).ok());
    std::string a = Update(id, v1::TASK_ACCEPTED, "org.foodbank", "receiver");
    std::string b = Update(id, v1::TASK_REJECTED, "org.foodbank", "receiver", "no-capacity");
    std::latch go(2);
    absl::Status ra, rb;
    std::thread ta([&] {
      go.arrive_and_wait();
      ra = core_->UpdateStatus(a).status();
    });
    std::thread tb([&] {
      go.arrive_and_wait();
      rb = core_->UpdateStatus(b).status();
    });
    ta.join();
    tb.join();
    EXPECT_NE(ra.ok(), rb.ok()) << ra << " / " << rb;
    const absl::Status& lost = ra.ok() ? rb : ra;
    EXPECT_EQ(lost.code(), absl::StatusCode::kFailedPrecondition) << lost;
  }
}

TEST_F(ReferralTest, NoSectionIsDisclosedAfterARevocationThatCoversIt) {
  int routed = 0;
  for (int i = 0; i < 60; ++i) {
    std::string subject = *env_.NewSubject(absl::StrCat("race-", i));
    std::string consent = *env_.Grant(ConsentEnv::NetworkConsent(subject, {"contact"}));
    auto req = Referral(absl::StrCat("r-", i), "org.foodbank", absl::StrCat("race-", i));
    v1::RevokeConsent revoke;
    revoke.set_consent_id(consent);
    revoke.set_reason("withdrawn");
    std::string revoke_bytes = env_.Sign(revoke, "org.stmarys", "sender");
    std::latch go(2);
    absl::Status submitted, revoked;
    std::thread a([&] {
      go.arrive_and_wait();
      submitted = core_->Submit(req).status();
    });
    std::thread b([&] {
      go.arrive_and_wait();
      revoked = env_.consent()->Submit(revoke_bytes).status();
      for (int r = 0; absl::IsAborted(revoked) && r < 3; ++r)
        revoked = env_.consent()->Submit(revoke_bytes).status();
    });
    a.join();
    b.join();
    ASSERT_TRUE(submitted.ok()) << submitted;  // routed either way; only what it discloses differs
    ASSERT_TRUE(revoked.ok()) << revoked;
    ++routed;
  }
  // Every disclosure precedes the revocation of each consent it relied on.
  auto audit = careloop::testing::AuditDisclosures(env_.ledger());
  ASSERT_TRUE(audit.ok()) << audit.status();
  const int after = audit->after_covering_revocation;
  std::cout << "referral race: " << audit->disclosures << " sections disclosed before the "
            << "revocation, " << audit->notices << " holders told\n";
  EXPECT_EQ(after, 0);
  EXPECT_EQ(routed, 60);
}

TEST_F(ReferralTest, ByCriteriaTheBestEligibleAgencyIsChosenWithReasons) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  auto req = ByCriteria("r-1");
  auto sent = core_->Submit(req);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->recipient_agency(), "org.shelter") << "more open slots";
  ASSERT_GE(sent->candidates_size(), 2);
  EXPECT_EQ(sent->candidates(1).agency_id(), "org.foodbank");
  // Not chosen: sees nothing.
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  EXPECT_EQ(core_->Get(get, Who("org.foodbank")).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// An agency listed from a directory import (the hub admin registers it with
// no key and no actor) is searchable but never routed to, by criteria or by
// name, however well it fits; onboarding it (a key, an actor) changes that.
TEST_F(ReferralTest, AListedAgencyIsNeverRoutedToUntilOnboarded) {
  v1::RegisterAgency listed;
  listed.set_agency_id("hsds.pantry");
  listed.mutable_profile()->set_display_name("Corner Pantry");
  listed.mutable_profile()->set_kind(v1::COMMUNITY_AGENCY);
  listed.mutable_profile()->set_source("hsds:pantry");
  listed.mutable_profile()->add_services("food-insecurity");
  listed.mutable_profile()->add_roles("receiver");
  ASSERT_TRUE(env_.directory()->Submit(env_.SignAsHub(listed)).ok());
  // Actors without a key cannot be listed with it.
  v1::RegisterAgency with_actor = listed;
  with_actor.set_agency_id("hsds.other");
  with_actor.add_actors()->set_user_id("u-1");
  EXPECT_EQ(env_.directory()->Submit(env_.SignAsHub(with_actor)).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::ReportCapacity cap;
  cap.set_agency_id("hsds.pantry");
  cap.set_service("food-insecurity");
  cap.set_open_slots(99);
  ASSERT_TRUE(env_.directory()->Submit(env_.SignAsHub(cap)).ok());
  ReportSlots({{"org.foodbank", 1}});

  auto sent = core_->Submit(ByCriteria("r-1"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->recipient_agency(), "org.foodbank") << "99 open places, but not onboarded";
  bool explained = false;
  for (const auto& c : sent->candidates()) {
    if (c.agency_id() == "hsds.pantry") {
      EXPECT_FALSE(c.eligible());
      explained = absl::StrContains(absl::StrJoin(c.reasons(), "; "), "not onboarded");
    }
  }
  EXPECT_TRUE(explained);
  const int before = Count("ReferralSubmitted");
  ExpectRefusedWritingNothing(core_->Submit(Referral("r-2", "hsds.pantry")).status(),
                              absl::StatusCode::kFailedPrecondition, "not onboarded");
  EXPECT_EQ(Count("ReferralSubmitted"), before);

  // Onboarded by the hub admin: its key, then an actor; now it can be named.
  v1::AddAgencyKey key;
  key.set_agency_id("hsds.pantry");
  key.mutable_key()->set_key_id("k1");
  key.mutable_key()->set_public_key(env_.AgencyPublicKey());
  ASSERT_TRUE(env_.directory()->Submit(env_.SignAsHub(key)).ok());
  v1::SetActor actor;
  actor.set_agency_id("hsds.pantry");
  actor.mutable_actor()->set_user_id("u-hsds.pantry");
  actor.mutable_actor()->add_roles("receiver");
  ASSERT_TRUE(env_.directory()->Submit(env_.SignAsHub(actor)).ok());
  auto again = Referral("r-3", "hsds.pantry");
  again.set_force_reason("the same need, to the pantry too");
  auto named = core_->Submit(again);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->recipient_agency(), "hsds.pantry");
}

TEST_F(ReferralTest, AcceptingTakesASlotAndConcurrentAcceptsNeverOverbook) {
  v1::ReportCapacity cap;
  cap.set_agency_id("org.foodbank");
  cap.set_service("food-insecurity");
  cap.set_open_slots(2);
  ASSERT_TRUE(env_.directory()->Submit(env_.Sign(cap, "org.foodbank", "receiver")).ok());
  constexpr int kReferrals = 6;
  std::vector<std::string> accepts;
  for (int i = 0; i < kReferrals; ++i) {
    auto req = Referral(absl::StrCat("r-", i));
    req.set_force_reason("capacity test");
    ASSERT_TRUE(core_->Submit(req).ok());
    accepts.push_back(Update(absl::StrCat("r-", i), v1::TASK_ACCEPTED, "org.foodbank", "receiver"));
  }
  std::latch go(kReferrals);
  std::vector<absl::Status> results(kReferrals);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReferrals; ++i) {
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      results[i] = core_->UpdateStatus(accepts[i]).status();
    });
  }
  for (auto& t : threads) t.join();
  int won = 0;
  int won_index = -1;
  for (int i = 0; i < kReferrals; ++i) {
    if (results[i].ok()) {
      ++won;
      won_index = i;
    } else {
      EXPECT_EQ(results[i].code(), absl::StatusCode::kFailedPrecondition) << results[i];
      EXPECT_NE(std::string(results[i].message()).find("no open capacity"), std::string::npos)
          << results[i];
    }
  }
  EXPECT_EQ(won, 2) << "two slots, two accepts";
  auto fb = env_.directory()->GetAgency(AgencyRequest("org.foodbank"), Who("org.foodbank"));
  ASSERT_TRUE(fb.ok());
  EXPECT_EQ(directory::OpenSlots(fb->capacity(0)), 0);
  // Others do not see which referrals hold the slots.
  EXPECT_EQ(env_.directory()
                ->GetAgency(AgencyRequest("org.foodbank"), Who("org.shelter"))
                ->capacity(0)
                .holders_size(),
            0);
  // Completing one gives its slot back; a waiting referral can then be accepted.
  ASSERT_TRUE(core_
                  ->UpdateStatus(Update(absl::StrCat("r-", won_index), v1::TASK_COMPLETED,
                                        "org.foodbank", "receiver", "", "food box"))
                  .ok());
  EXPECT_EQ(directory::OpenSlots(env_.directory()
                                     ->GetAgency(AgencyRequest("org.foodbank"), Who("admin:ops"))
                                     ->capacity(0)),
            1);
  int later = 0;
  for (int i = 0; i < kReferrals; ++i) {
    if (!results[i].ok()) later += core_->UpdateStatus(accepts[i]).ok();
  }
  EXPECT_EQ(later, 1);
}

TEST_F(ReferralTest, EscalationSeesReferralsRoutedAfterItsLastPass) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  ASSERT_TRUE(core_->Submit(Referral("r-0", "org.foodbank", "000999")).ok());
  EXPECT_EQ(*core_->Escalate(), 0);  // has read the routing index up to r-0
  auto sent = core_->Submit(ByCriteria("r-1"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->recipient_agency(), "org.shelter");
  env_.clock().Advance(absl::Hours(4));  // both urgent deadlines pass
  EXPECT_EQ(*core_->Escalate(), 2) << "r-0 goes unassigned, r-1 to the next candidate";
  auto view = ViewAs("org.stmarys");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->recipient_agency(), "org.foodbank");
  EXPECT_EQ(view->attempt(), 2u);
}

// A routing entry whose referral cannot be loaded (sorted first) is
// reported and counted, and the pass goes on to the others.
TEST_F(ReferralTest, EscalationGoesOnPastAReferralItCannotLoad) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  v1::AppendRequest ghost;
  v1::EventInput* ev = ghost.add_events();
  ev->set_stream(names::stream::kRoutingIndex);
  ev->set_type(names::event::kRoutingOpened);
  ev->set_payload("org.aaa/r-ghost");
  ASSERT_TRUE(env_.ledger()->Append(ghost).ok());
  auto sent = core_->Submit(ByCriteria("r-1"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  env_.clock().Advance(absl::Hours(4));
  auto moved = core_->Escalate();
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, 1) << "r-1 goes to its next candidate";
  EXPECT_EQ(core_->escalation_skipped(), 1u);
}

TEST_F(ReferralTest, UnacceptedReferralsEscalateAcrossARestartThenGoUnassigned) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  auto req = ByCriteria("r-1");
  auto sent = core_->Submit(req);
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->recipient_agency(), "org.shelter");
  // Urgent: four hours to accept. After three both parties are warned, once.
  env_.clock().Advance(absl::Hours(3) - absl::Nanoseconds(1));
  EXPECT_EQ(*core_->Escalate(), 0);
  EXPECT_EQ(Count("ReferralDeadlineWarning"), 0);
  env_.clock().Advance(absl::Nanoseconds(1));
  EXPECT_EQ(*core_->Escalate(), 0);
  EXPECT_EQ(Count("ReferralDeadlineWarning"), 1);
  // Nothing moves a nanosecond before the deadline.
  env_.clock().Advance(absl::Hours(1) - absl::Nanoseconds(1));
  EXPECT_EQ(*core_->Escalate(), 0);
  EXPECT_EQ(Count("ReferralDeadlineWarning"), 1) << "once per routing attempt";
  // The hub restarts; the deadline comes from the ledger and the clock.
  core_.reset();
  ASSERT_TRUE(env_.Restart().ok());
  core_ = std::make_unique<ReferralCore>(env_.ledger(), env_.directory_state(), env_.runner(),
                                         env_.consent(), &env_.clock());
  env_.clock().Advance(absl::Nanoseconds(1));
  EXPECT_EQ(*core_->Escalate(), 1);
  EXPECT_EQ(*core_->Escalate(), 0) << "once per deadline";
  EXPECT_EQ(Count("ReferralDeadlineWarning"), 1) << "the new recipient's clock starts now";
  auto view = ViewAs("org.stmarys");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->recipient_agency(), "org.foodbank");
  EXPECT_EQ(view->attempt(), 2u);
  EXPECT_EQ(view->status(), v1::TASK_REQUESTED);
  // The new recipient gets what consent allows it; the former one keeps what it had.
  EXPECT_EQ(ViewAs("org.foodbank")->sections_size(), 2);
  EXPECT_TRUE(ViewAs("org.shelter").ok());
  // Declined for capacity: nobody is left, so it is unassigned and the sender told.
  ASSERT_TRUE(core_
                  ->UpdateStatus(
                      Update("r-1", v1::TASK_REJECTED, "org.foodbank", "receiver", "no-capacity"))
                  .ok());
  view = ViewAs("org.stmarys");
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->unassigned());
  EXPECT_EQ(view->history().rbegin()->type(), "ReferralUnassigned");
  EXPECT_EQ(Count("ReferralUnassigned"), 1);
  EXPECT_EQ(*core_->Escalate(), 0);
  // The sender may send it again.
  auto again = Referral("r-2");
  EXPECT_TRUE(core_->Submit(again).ok());
}

TEST_F(ReferralTest, ANamedRecipientThatNeverAnswersLeavesItUnassigned) {
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());  // urgent, to org.foodbank
  env_.clock().Advance(absl::Hours(5));
  EXPECT_EQ(*core_->Escalate(), 1);
  EXPECT_TRUE(ViewAs("org.stmarys")->unassigned());
  // An accepted one never escalates.
  ASSERT_TRUE(core_->Submit(Referral("r-2")).ok());
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-2", v1::TASK_ACCEPTED, "org.foodbank", "receiver")).ok());
  env_.clock().Advance(absl::Hours(100));
  EXPECT_EQ(*core_->Escalate(), 0);
}

TEST_F(ReferralTest, ThreadMessagesReachTheOtherPartyUnderTheSameConsentRules) {
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  auto message = [&](const std::string& agency, const std::string& role,
                     std::vector<std::pair<std::string, std::string>> parts) {
    std::vector<v1::Section> sections;
    for (auto& [category, text] : parts) {
      v1::Section sec;
      sec.set_section_id(category);
      sec.set_category(category);
      sec.set_media_type("text/plain");
      sec.set_content(text);
      sections.push_back(sec);
    }
    v1::ReferralMessage m;
    m.set_sender_agency("org.stmarys");
    m.set_referral_id("r-1");
    auto digests = SealSections(&sections, RandomBytes);
    EXPECT_TRUE(digests.ok());
    for (auto& d : *digests) *m.add_sections() = d;
    v1::PostMessageRequest req;
    req.set_envelope(env_.Sign(m, agency, role));
    for (auto& sec : sections) *req.add_sections() = sec;
    return req;
  };
  const int before = Count("DisclosureRecorded");
  auto posted = core_->PostMessage(message(
      "org.stmarys", "sender", {{"contact", "call after 5pm"}, {"behavioral-health", "anxious"}}));
  ASSERT_TRUE(posted.ok()) << posted.status();
  ASSERT_EQ(posted->withheld_size(), 1);
  EXPECT_EQ(Count("DisclosureRecorded"), before + 1);
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  auto seen = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->thread_size(), 1);
  ASSERT_EQ(seen->thread(0).sections_size(), 1);
  EXPECT_EQ(seen->thread(0).sections(0).content(), "call after 5pm");
  EXPECT_EQ(seen->thread(0).withheld(0).category(), "behavioral-health");
  // The recipient answers; SUD records it may not pass on.
  ASSERT_TRUE(core_
                  ->PostMessage(
                      message("org.foodbank", "receiver", {{"social-needs", "enrolled in pantry"}}))
                  .ok());
  EXPECT_EQ(core_->Get(get, Who("org.stmarys"))->thread_size(), 2);
  uint64_t size = env_.ledger()->size();
  auto part2 =
      core_->PostMessage(message("org.foodbank", "receiver", {{"sud-part2", "in treatment"}}));
  EXPECT_EQ(part2.status().code(), absl::StatusCode::kPermissionDenied) << part2.status();
  EXPECT_NE(std::string(part2.status().message()).find("part 2"), std::string::npos);
  // Strangers and the wrong role: refused, nothing written.
  EXPECT_EQ(
      core_->PostMessage(message("org.shelter", "receiver", {{"contact", "hi"}})).status().code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      core_->PostMessage(message("org.stmarys", "admin", {{"contact", "hi"}})).status().code(),
      absl::StatusCode::kPermissionDenied);
  auto tampered = message("org.stmarys", "sender", {{"contact", "x"}});
  tampered.mutable_sections(0)->set_content("y");
  EXPECT_EQ(core_->PostMessage(tampered).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(env_.ledger()->size(), size);
  // A third agency sees no thread.
  EXPECT_EQ(core_->Get(get, Who("org.shelter")).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(ReferralTest, OpeningIsRecordedOnceAsViewedWhichIsNotAccepted) {
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  EXPECT_EQ(core_->Get(get, Who("org.stmarys"))->viewed_unix_nanos(), 0)
      << "the sender's read is not it";
  auto first = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(first.ok());
  EXPECT_NE(first->viewed_unix_nanos(), 0);
  EXPECT_EQ(first->status(), v1::TASK_REQUESTED);
  const int viewed = Count("ReferralViewed");
  const int reads = Count("RecordAccessed");
  EXPECT_TRUE(core_->Get(get, Who("org.foodbank")).ok());
  EXPECT_EQ(Count("ReferralViewed"), viewed) << "once";
  EXPECT_EQ(Count("RecordAccessed"), reads + 1) << "every read is recorded";
  auto sender_view = core_->Get(get, Who("org.stmarys"));
  EXPECT_EQ(sender_view->viewed_unix_nanos(), first->viewed_unix_nanos());
  EXPECT_EQ(Count("ReferralViewed"), 1);
}

TEST_F(ReferralTest, APart2SectionTravelsWithTheRedisclosureNotice) {
  std::string s2 = *env_.NewSubject("p2");
  v1::Consent c = ConsentEnv::NetworkConsent(s2, {"contact", "sud-part2"});
  v1::Part2Elements* p = c.mutable_part2();
  p->set_who_may_disclose("St Mary's SUD program");
  p->set_information_description("treatment summary");
  p->set_recipients_description("network agencies");
  p->set_purpose_description("care coordination");
  p->set_right_to_revoke_acknowledged(true);
  p->set_expiration("one year");
  p->set_signed_(true);
  p->set_signed_unix_nanos(absl::ToUnixNanos(env_.clock().Now()));
  ASSERT_TRUE(env_.Grant(c).ok());
  v1::Section sud;
  sud.set_section_id("sud");
  sud.set_category("sud-part2");
  sud.set_media_type("text/plain");
  sud.set_content("in outpatient treatment");
  ASSERT_TRUE(core_->Submit(Referral("r-p2", "org.foodbank", "p2", {sud})).ok());
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-p2");
  auto seen = core_->Get(get, Who("org.foodbank"));
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->sections_size(), 1);
  EXPECT_NE(seen->redisclosure_notice().find("42 CFR part 2"), std::string::npos);
}

// Ranking alone, table-driven.
TEST(Routing, RankingIsDeterministicAndExplained) {
  auto agency = [](const std::string& id, std::vector<std::string> langs, bool active = true) {
    v1::AgencyRecord a;
    a.set_agency_id(id);
    a.set_active(active);
    a.mutable_profile()->add_services("food-insecurity");
    a.mutable_profile()->add_roles("receiver");
    a.mutable_profile()->mutable_area()->add_postal_codes("97201");
    for (auto& l : langs) a.mutable_profile()->add_languages(l);
    a.add_keys()->set_key_id("k1");
    a.add_actors()->set_user_id("u-intake");
    return a;
  };
  std::vector<v1::AgencyRecord> all = {agency("org.a", {"en"}), agency("org.b", {"es"}),
                                       agency("org.c", {"es"}), agency("org.d", {"es"}, false)};
  v1::AgencyRecord vets = agency("org.v", {"es"});
  vets.mutable_profile()->mutable_eligibility()->set_veterans_only(true);
  all.push_back(vets);
  v1::AgencyRecord far = agency("org.far", {"es"});
  far.mutable_profile()->mutable_area()->set_postal_codes(0, "10001");
  all.push_back(far);
  // Listed from an import, never onboarded: no key; then a key but only a
  // deactivated actor; then a revoked key. Each passed over however well it
  // fits.
  v1::AgencyRecord listed = agency("org.listed", {"es"});
  listed.clear_keys();
  all.push_back(listed);
  v1::AgencyRecord nobody = agency("org.nobody", {"es"});
  nobody.mutable_actors(0)->set_inactive(true);
  all.push_back(nobody);
  v1::AgencyRecord revoked = agency("org.revoked", {"es"});
  revoked.mutable_keys(0)->set_revoked_unix_nanos(1);
  all.push_back(revoked);
  v1::RoutingCriteria c;
  c.set_postal_code("97201");
  c.set_language("es");
  std::map<std::string, int64_t> slots = {
      {"org.a", 9},   {"org.b", 1},       {"org.c", 3},       {"org.d", 9},       {"org.v", 9},
      {"org.far", 9}, {"org.listed", 99}, {"org.nobody", 99}, {"org.revoked", 99}};
  auto ranked = RankCandidates(all, "food-insecurity", c, slots);
  std::vector<std::string> order;
  for (const auto& r : ranked) order.push_back(r.agency_id() + (r.eligible() ? "" : "(x)"));
  EXPECT_EQ(order, (std::vector<std::string>{"org.c", "org.b", "org.a", "org.d(x)", "org.far(x)",
                                             "org.listed(x)", "org.nobody(x)", "org.revoked(x)",
                                             "org.v(x)"}));
  auto reasons = [&](const std::string& id) {
    for (const auto& r : ranked) {
      if (r.agency_id() == id) return absl::StrJoin(r.reasons(), "; ");
    }
    return std::string();
  };
  EXPECT_NE(reasons("org.c").find("speaks es"), std::string::npos);
  EXPECT_NE(reasons("org.d").find("suspended"), std::string::npos);
  EXPECT_NE(reasons("org.far").find("does not serve the subject's area"), std::string::npos);
  EXPECT_NE(reasons("org.v").find("veterans only"), std::string::npos);
  for (const char* id : {"org.listed", "org.nobody", "org.revoked"})
    EXPECT_EQ(reasons(id), "not onboarded (no key or no active actor)") << id;
  slots.erase("org.c");
  EXPECT_EQ(RankCandidates(all, "food-insecurity", c, slots)[0].agency_id(), "org.b")
      << "no capacity reported: passed over";
}

}  // namespace
}  // namespace careloop::referral

namespace careloop::referral {
namespace {

// The abuse of issue 16: a former recipient's view was rendered with the
// current routing's withheld list, so it could be shown a section never
// disclosed to it. It sees what it held while the referral was its own:
// nothing after, not even where the referral went.
TEST_F(ReferralTest, AFormerRecipientSeesWhatItHeldAndNothingAfter) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  v1::Consent bh = ConsentEnv::NetworkConsent(subject_, {"behavioral-health"});
  bh.mutable_provision()->clear_recipients();
  bh.mutable_provision()->add_recipients()->set_agency_id("org.foodbank");
  ASSERT_TRUE(env_.Grant(bh).ok());
  auto sent = core_->Submit(ByCriteria("r-1"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->recipient_agency(), "org.shelter");
  auto held = ViewAs("org.shelter");
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(held->sections_size(), 2) << "contact and social needs; behavioural health withheld";
  env_.clock().Advance(absl::Hours(4));
  ASSERT_EQ(*core_->Escalate(), 1);
  auto now = ViewAs("org.foodbank");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->sections_size(), 3) << "the new recipient's consent covers behavioural health";
  // Later a consent would let the shelter see behavioural health too: it was
  // never disclosed to the shelter, so its view still withholds it.
  v1::Consent later = bh;
  later.mutable_provision()->clear_recipients();
  later.mutable_provision()->add_recipients()->set_agency_id("org.shelter");
  ASSERT_TRUE(env_.Grant(later).ok());
  const int disclosures = Count("DisclosureRecorded");
  auto former = ViewAs("org.shelter");
  ASSERT_TRUE(former.ok()) << former.status();
  EXPECT_EQ(former->sections_size(), 2);
  for (const v1::Section& s : former->sections()) EXPECT_NE(s.category(), "behavioral-health");
  bool withheld = false;
  for (const v1::WithheldSection& w : former->withheld())
    withheld |= w.category() == "behavioral-health";
  EXPECT_TRUE(withheld);
  EXPECT_EQ(former->recipient_agency(), "org.shelter") << "not where the referral went next";
  EXPECT_EQ(former->attempt(), 1u);
  for (const v1::ReferralHistoryEntry& h : former->history())
    EXPECT_NE(h.recipient_agency(), "org.foodbank") << "nothing after it left";
  EXPECT_EQ(Count("DisclosureRecorded"), disclosures) << "a view discloses nothing new";
  EXPECT_GE(Count("RecordAccessed"), 1) << "but it is a recorded read";
  // Negative control: the current recipient and the sender see the new routing.
  EXPECT_EQ(ViewAs("org.foodbank")->recipient_agency(), "org.foodbank");
  EXPECT_EQ(ViewAs("org.stmarys")->recipient_agency(), "org.foodbank");
  // And an agency that never held it sees nothing, as for a missing referral.
  auto never = ViewAs("org.clinic");
  auto missing = ViewAs("org.clinic", "org.stmarys/r-404");
  EXPECT_EQ(never.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace careloop::referral

namespace careloop::referral {
namespace {

// An open referral is a relationship to the person: its current recipient
// may record the person's consent; once the referral moved on or closed, the
// agency may not.
TEST_F(ReferralTest, AnOpenReferralIsARelationshipAndAClosedOneIsNot) {
  ReportSlots({{"org.foodbank", 2}, {"org.shelter", 5}});
  auto grant_as = [&](const std::string& agency) {
    v1::GrantConsent g;
    *g.mutable_consent() = ConsentEnv::NetworkConsent(subject_, {"contact"});
    return env_.consent()->Submit(env_.Sign(g, agency, "receiver")).status();
  };
  EXPECT_EQ(grant_as("org.shelter").code(), absl::StatusCode::kPermissionDenied)
      << "no referral yet";
  ASSERT_EQ(core_->Submit(ByCriteria("r-1"))->recipient_agency(), "org.shelter");
  EXPECT_TRUE(grant_as("org.shelter").ok()) << "the current recipient";
  ASSERT_TRUE(
      core_
          ->UpdateStatus(Update("r-1", v1::TASK_REJECTED, "org.shelter", "receiver", "no-capacity"))
          .ok());
  ASSERT_EQ(ViewAs("org.stmarys")->recipient_agency(), "org.foodbank");
  absl::Status former = grant_as("org.shelter");
  EXPECT_EQ(former.code(), absl::StatusCode::kPermissionDenied) << "a former recipient";
  EXPECT_TRUE(absl::StrContains(former.message(), "no relationship")) << former;
  EXPECT_TRUE(grant_as("org.foodbank").ok()) << "the new recipient";
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank", "receiver")).ok());
  ASSERT_TRUE(core_
                  ->UpdateStatus(Update("r-1", v1::TASK_COMPLETED, "org.foodbank", "receiver", "",
                                        "weekly food box"))
                  .ok());
  EXPECT_EQ(grant_as("org.foodbank").code(), absl::StatusCode::kPermissionDenied)
      << "the referral is closed";
}

}  // namespace
}  // namespace careloop::referral
