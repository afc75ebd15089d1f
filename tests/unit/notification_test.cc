// The notification core on a real ledger with the real directory, consent
// and referral cores: consumers, in-order delivery of what concerns an agency
// (and nothing else), cumulative acks and their rules, go-back-N redelivery
// with raised attempt numbers (injected clock), takeover, resumption after a
// restart from the durable cursor, the window bound, the delivered status,
// and a revocation between disclosure and delivery withholding content.
#include <gtest/gtest.h>

#include <atomic>

#include "services/names/names.h"
#include "services/notification/notification_core.h"
#include "services/referral/sections.h"
#include "services/trust/envelope.h"
#include "tests/support/forwarding_ledger.h"
#include "tests/support/referral_fixture.h"

namespace careloop::notification {
namespace {

using careloop::testing::ReferralFixture;

class NotificationTest : public ReferralFixture {
 protected:
  void SetUp() override {
    ReferralFixture::SetUp();
    StartCore();
  }
  void TearDown() override { notes_.reset(); }

  void StartCore(NotificationOptions o = {}, storage::Ledger* ledger = nullptr) {
    o.ack_timeout = absl::Seconds(30);
    if (window_ != 0) o.window = window_;
    notes_ = std::make_unique<NotificationCore>(ledger != nullptr ? ledger : env_.ledger(),
                                                core_.get(), &env_.clock(), o);
    ASSERT_TRUE(notes_->Start().ok());
  }

  // A consumer that starts at the ledger's end (after the test agencies'
  // registrations), unless it exists already.
  std::unique_ptr<NotificationCore::Subscription> Subscribe(const std::string& agency,
                                                            const std::string& consumer = "main") {
    v1::CreateConsumerRequest c;
    c.set_consumer(consumer);
    c.set_start_after_seq(env_.ledger()->size());
    EXPECT_TRUE(notes_->CreateConsumer(c, agency).ok());
    v1::SubscribeRequest s;
    s.set_consumer(consumer);
    auto sub = notes_->Subscribe(s, agency);
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *std::move(sub) : nullptr;
  }

  // Everything the subscription has to send now (the ledger is quiet).
  std::vector<v1::Notification> Drain(NotificationCore::Subscription* sub) {
    std::vector<v1::Notification> all;
    EXPECT_TRUE(notes_->WaitForTail(env_.ledger()->size(), absl::Seconds(30)).ok());
    while (true) {
      auto batch = sub->Next(absl::ZeroDuration());
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || batch->empty()) return all;
      for (auto& n : *batch) all.push_back(std::move(n));
    }
  }

  absl::StatusOr<v1::AckResponse> Ack(const std::string& agency, uint64_t up_to,
                                      const std::string& consumer = "main") {
    v1::AckRequest a;
    a.set_consumer(consumer);
    a.set_up_to_seq(up_to);
    return notes_->Ack(a, agency);
  }

  // Referrals r-1..r-n to the food bank, each about another person.
  void SendToFoodBank(int n) {
    for (int i = 1; i <= n; ++i) {
      ASSERT_TRUE(
          core_->Submit(Referral(absl::StrCat("r-", i), "org.foodbank", absl::StrCat("00012", i)))
              .ok());
    }
  }

  // Two referrals sent to the food bank's subscription `food`, both received,
  // and the one at `acked` acknowledged; `got` holds what was received.
  void TwoSentOneAcked(NotificationCore::Subscription* food, size_t acked,
                       std::vector<v1::Notification>* got) {
    SendToFoodBank(2);
    *got = Drain(food);
    ASSERT_EQ(got->size(), 2u);
    ASSERT_TRUE(Ack("org.foodbank", (*got)[acked].seq()).ok());
  }

  static std::vector<std::string> Kinds(const std::vector<v1::Notification>& ns) {
    std::vector<std::string> out;
    for (const auto& n : ns) out.push_back(n.kind());
    return out;
  }

  // Referral r-1 sent, then its consent revoked before any delivery.
  void SendThenRevoke() {
    ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
    v1::RevokeConsent revoke;
    revoke.set_consent_id(consent_id_);
    revoke.set_reason("withdrawn");
    ASSERT_TRUE(env_.consent()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
  }

  uint32_t window_ = 0;
  std::unique_ptr<NotificationCore> notes_;
};

TEST_F(NotificationTest, ConsumersAreNamedCreatedOnceAndNeeded) {
  v1::CreateConsumerRequest c;
  c.set_consumer("main");
  auto first = notes_->CreateConsumer(c, "org.foodbank");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created());
  auto again = notes_->CreateConsumer(c, "org.foodbank");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created()) << "creating an existing consumer changes nothing";
  const uint64_t size = env_.ledger()->size();
  for (const char* bad : {"", "has space", "slash/no", "x\n"}) {
    c.set_consumer(bad);
    EXPECT_EQ(notes_->CreateConsumer(c, "org.foodbank").status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  c.set_consumer("late");
  c.set_start_after_seq(size + 100);
  EXPECT_EQ(notes_->CreateConsumer(c, "org.foodbank").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(env_.ledger()->size(), size) << "refusals write nothing";
  v1::SubscribeRequest s;
  s.set_consumer("never-made");
  EXPECT_EQ(notes_->Subscribe(s, "org.foodbank").status().code(), absl::StatusCode::kNotFound);
  s.set_consumer("main");
  EXPECT_EQ(notes_->Subscribe(s, "org.shelter").status().code(), absl::StatusCode::kNotFound)
      << "consumers belong to their agency";
  // A limit per agency.
  for (int i = 1; i < 16; ++i) {
    c.set_consumer(absl::StrCat("c", i));
    c.set_start_after_seq(0);
    ASSERT_TRUE(notes_->CreateConsumer(c, "org.foodbank").ok());
  }
  c.set_consumer("one-too-many");
  EXPECT_EQ(notes_->CreateConsumer(c, "org.foodbank").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(NotificationTest, ANewConsumerStartsFromTheAgencysFirstEventByDefault) {
  v1::CreateConsumerRequest c;
  c.set_consumer("everything");
  ASSERT_TRUE(notes_->CreateConsumer(c, "org.foodbank").ok());
  v1::SubscribeRequest s;
  s.set_consumer("everything");
  auto sub = notes_->Subscribe(s, "org.foodbank");
  ASSERT_TRUE(sub.ok());
  auto got = Drain(sub->get());
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].kind(), "directory.changed");
  v1::Envelope e;
  ASSERT_TRUE(e.ParseFromString(got[0].envelope()));
  EXPECT_EQ(e.payload_type(), "careloop.v1.RegisterAgency") << "its own registration";
}

TEST_F(NotificationTest, EachPartyGetsWhatConcernsItInOrderAndNothingElse) {
  auto hospital = Subscribe("org.stmarys");
  auto food = Subscribe("org.foodbank");
  auto shelter = Subscribe("org.shelter");
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  ASSERT_TRUE(
      core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank", "receiver")).ok());

  auto got = Drain(food.get());
  ASSERT_EQ(Kinds(got), (std::vector<std::string>{"referral.received", "referral.status"}));
  const v1::Notification& received = got[0];
  EXPECT_EQ(received.referral(), "org.stmarys/r-1");
  EXPECT_EQ(received.attempt(), 1u);
  EXPECT_LT(got[0].seq(), got[1].seq());
  // The recipient checks the sender's signature and every section it got,
  // with only the sender's public key; the withheld section has no content.
  v1::Envelope e;
  ASSERT_TRUE(e.ParseFromString(received.envelope()));
  auto key = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0b'));
  EXPECT_TRUE(key.public_key().Verify(trust::SigningInput(e), e.signature()));
  v1::ReferralManifest m;
  ASSERT_TRUE(m.ParseFromString(e.payload()));
  std::vector<v1::Section> sections(received.sections().begin(), received.sections().end());
  EXPECT_EQ(sections.size(), 2u);
  EXPECT_TRUE(referral::VerifySections(m.sections(), sections, /*require_all=*/false).ok());
  ASSERT_EQ(received.withheld_size(), 1);
  EXPECT_EQ(received.withheld(0).section_id(), "bh");
  EXPECT_TRUE(received.payload().empty()) << "other candidates are not the recipient's business";

  auto own = Drain(hospital.get());
  ASSERT_EQ(Kinds(own), (std::vector<std::string>{"referral.routed", "referral.status"}));
  v1::ReferralRouted routed;
  ASSERT_TRUE(routed.ParseFromString(own[0].payload()));
  EXPECT_EQ(routed.recipient_agency(), "org.foodbank");
  v1::Envelope status;
  ASSERT_TRUE(status.ParseFromString(own[1].envelope()));
  EXPECT_TRUE(key.public_key().Verify(trust::SigningInput(status), status.signature()));

  EXPECT_TRUE(Drain(shelter.get()).empty()) << "a stranger learns nothing";
}

TEST_F(NotificationTest, AcksAreCumulativeAndOnlyForWhatWasSent) {
  auto food = Subscribe("org.foodbank");
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  ASSERT_TRUE(core_->Submit(Referral("r-2", "org.foodbank", "000124")).ok());
  auto got = Drain(food.get());
  ASSERT_EQ(got.size(), 2u);
  // Above what was sent: refused.
  EXPECT_EQ(Ack("org.foodbank", got[1].seq() + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto a = Ack("org.foodbank", got[1].seq());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->cursor(), got[1].seq());
  // Below or at the cursor: nothing happens.
  const uint64_t size = env_.ledger()->size();
  auto low = Ack("org.foodbank", got[0].seq());
  ASSERT_TRUE(low.ok());
  EXPECT_EQ(low->cursor(), got[1].seq());
  EXPECT_EQ(env_.ledger()->size(), size);
  EXPECT_EQ(*env_.ledger()->GetCursor(NotificationCore::CursorName("org.foodbank", "main")),
            got[1].seq());
  // Another agency cannot ack this consumer: it is not theirs.
  EXPECT_EQ(Ack("org.shelter", got[1].seq()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(NotificationTest, AnAckMarksTheReferralDeliveredAndTellsTheSender) {
  auto hospital = Subscribe("org.stmarys");
  auto food = Subscribe("org.foodbank");
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  auto got = Drain(food.get());
  ASSERT_EQ(got.size(), 1u);
  v1::GetReferralRequest get;
  get.set_referral("org.stmarys/r-1");
  EXPECT_EQ(core_->View("org.stmarys/r-1", "org.stmarys")->delivered_unix_nanos(), 0)
      << "sent is not delivered";
  ASSERT_TRUE(Ack("org.foodbank", got[0].seq()).ok());
  auto view = core_->View("org.stmarys/r-1", "org.stmarys");
  ASSERT_TRUE(view.ok());
  EXPECT_GT(view->delivered_unix_nanos(), 0);
  EXPECT_EQ(view->viewed_unix_nanos(), 0) << "delivered is not viewed";
  EXPECT_EQ(view->status(), v1::TASK_REQUESTED) << "delivered is not accepted";
  EXPECT_EQ(Kinds(Drain(hospital.get())),
            (std::vector<std::string>{"referral.routed", "referral.delivered"}));
}

TEST_F(NotificationTest, NothingAckedInTimeMeansGoBackNWithRaisedAttempts) {
  auto food = Subscribe("org.foodbank");
  SendToFoodBank(3);
  auto first = Drain(food.get());
  ASSERT_EQ(first.size(), 3u);
  for (const auto& n : first) EXPECT_EQ(n.attempt(), 1u);
  // Before the timeout: nothing more.
  env_.clock().Advance(absl::Seconds(29));
  EXPECT_TRUE(Drain(food.get()).empty());
  env_.clock().Advance(absl::Seconds(1));
  auto again = Drain(food.get());
  ASSERT_EQ(again.size(), 3u) << "everything after the cursor, again";
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(again[i].seq(), first[i].seq());
    EXPECT_EQ(again[i].attempt(), 2u);
  }
  // Ack the first: after the next timeout only the rest comes back.
  ASSERT_TRUE(Ack("org.foodbank", first[0].seq()).ok());
  env_.clock().Advance(absl::Seconds(30));
  auto third = Drain(food.get());
  ASSERT_EQ(third.size(), 2u);
  EXPECT_EQ(third[0].seq(), first[1].seq());
  EXPECT_EQ(third[0].attempt(), 3u);
}

TEST_F(NotificationTest, TheWindowBoundsWhatIsUnacknowledged) {
  notes_.reset();
  window_ = 2;
  StartCore();
  auto food = Subscribe("org.foodbank");
  SendToFoodBank(5);
  auto got = Drain(food.get());
  ASSERT_EQ(got.size(), 2u) << "the stream pauses at the window";
  ASSERT_TRUE(Ack("org.foodbank", got[0].seq()).ok());
  auto more = Drain(food.get());
  ASSERT_EQ(more.size(), 1u);
  EXPECT_GT(more[0].seq(), got[1].seq());
}

TEST_F(NotificationTest, ANewSubscriptionTakesOverAndResumesAfterTheCursor) {
  auto food = Subscribe("org.foodbank");
  std::vector<v1::Notification> got;
  ASSERT_NO_FATAL_FAILURE(TwoSentOneAcked(food.get(), 0, &got));
  auto second = Subscribe("org.foodbank");
  EXPECT_EQ(food->Next(absl::ZeroDuration()).status().code(), absl::StatusCode::kAborted);
  auto resumed = Drain(second.get());
  ASSERT_EQ(resumed.size(), 1u) << "after the last ack, not from the start";
  EXPECT_EQ(resumed[0].seq(), got[1].seq());
  EXPECT_EQ(resumed[0].attempt(), 2u) << "it was sent before";
}

TEST_F(NotificationTest, AClientThatLostWhatItAckedReadsItAgain) {
  auto food = Subscribe("org.foodbank");
  std::vector<v1::Notification> got;
  ASSERT_NO_FATAL_FAILURE(TwoSentOneAcked(food.get(), 1, &got));
  v1::SubscribeRequest s;
  s.set_consumer("main");
  s.set_from_seq(got[0].seq());
  auto again = notes_->Subscribe(s, "org.foodbank");
  ASSERT_TRUE(again.ok()) << again.status();
  auto replayed = Drain(again->get());
  ASSERT_EQ(replayed.size(), 2u);
  EXPECT_EQ(replayed[0].seq(), got[0].seq());
  // Acks at or below the cursor change nothing; skipping ahead is refused.
  EXPECT_EQ(Ack("org.foodbank", got[0].seq())->cursor(), got[1].seq());
  s.set_from_seq(got[1].seq() + 2);
  EXPECT_EQ(notes_->Subscribe(s, "org.foodbank").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NotificationTest, TheCursorSurvivesARestart) {
  auto food = Subscribe("org.foodbank");
  std::vector<v1::Notification> got;
  ASSERT_NO_FATAL_FAILURE(TwoSentOneAcked(food.get(), 0, &got));
  food.reset();
  notes_.reset();
  core_.reset();
  ASSERT_TRUE(env_.Restart().ok());
  core_ = std::make_unique<referral::ReferralCore>(env_.ledger(), env_.directory_state(),
                                                   env_.runner(), env_.consent(), &env_.clock());
  StartCore();
  // Acks above the cursor are refused until this process sent something.
  EXPECT_EQ(Ack("org.foodbank", got[1].seq()).status().code(), absl::StatusCode::kInvalidArgument);
  auto again = Subscribe("org.foodbank");
  auto resumed = Drain(again.get());
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0].seq(), got[1].seq());
  // New events after the restart arrive too.
  ASSERT_TRUE(core_->Submit(Referral("r-3", "org.foodbank", "000125")).ok());
  auto fresh = Drain(again.get());
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].referral(), "org.stmarys/r-3");
}

TEST_F(NotificationTest, ARevocationBeforeDeliveryWithholdsTheContentAndIsRecorded) {
  auto food = Subscribe("org.foodbank");
  ASSERT_NO_FATAL_FAILURE(SendThenRevoke());
  // Delivered only now, after the revocation.
  auto got = Drain(food.get());
  ASSERT_EQ(Kinds(got), (std::vector<std::string>{"referral.received", "consent.revoked"}));
  EXPECT_EQ(got[0].sections_size(), 0) << "nothing consent no longer permits";
  ASSERT_EQ(got[0].withheld_size(), 3);
  int since = 0;
  for (const auto& w : got[0].withheld()) since += w.since_disclosure();
  EXPECT_EQ(since, 2) << "the two sections disclosed at routing";
  EXPECT_EQ(Count("DeliveryWithheld"), 1);
  // A redelivery withholds again without recording it twice.
  env_.clock().Advance(absl::Seconds(30));
  auto again = Drain(food.get());
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].sections_size(), 0);
  EXPECT_EQ(Count("DeliveryWithheld"), 1);
}

// The ledger refuses the first DeliveryWithheld record, as a full disk would.
class FailsTheFirstWithheldRecord final : public careloop::testing::ForwardingLedger {
 public:
  using ForwardingLedger::ForwardingLedger;
  void AppendAsync(v1::AppendRequest request, storage::AppendCallback done) override {
    if (request.events_size() > 0 && request.events(0).type() == names::event::kDeliveryWithheld &&
        !failed_.exchange(true)) {
      done(absl::UnavailableError("the ledger writer stopped: no space left on device"));
      return;
    }
    ForwardingLedger::AppendAsync(std::move(request), std::move(done));
  }

 private:
  std::atomic<bool> failed_{false};
};

// When the record of a withholding fails (the ledger refuses it), that
// delivery still goes out, bare: its seq and type, no content (never a
// poison event, and nothing consent no longer permits). The record is not
// lost: the next delivery of the event, once it went unacknowledged, writes
// it (once) and carries what was withheld.
TEST_F(NotificationTest, AWithheldDeliveryWhoseRecordFailedIsRecordedByTheNext) {
  FailsTheFirstWithheldRecord flaky(env_.ledger());
  notes_.reset();
  StartCore({}, &flaky);
  auto food = Subscribe("org.foodbank");
  ASSERT_NO_FATAL_FAILURE(SendThenRevoke());
  auto bare = Drain(food.get());
  ASSERT_EQ(bare.size(), 2u);
  EXPECT_EQ(bare[0].sections_size(), 0);
  EXPECT_EQ(bare[0].withheld_size(), 0) << "the record failed: the delivery is bare";
  EXPECT_EQ(Count("DeliveryWithheld"), 0);
  env_.clock().Advance(absl::Seconds(30));  // unacknowledged: it goes again
  auto again = Drain(food.get());
  ASSERT_EQ(Kinds(again), (std::vector<std::string>{"referral.received", "consent.revoked"}));
  EXPECT_EQ(again[0].sections_size(), 0);
  EXPECT_EQ(again[0].withheld_size(), 3);
  EXPECT_EQ(Count("DeliveryWithheld"), 1);
  food.reset();
  notes_.reset();  // before `flaky` goes
}

TEST_F(NotificationTest, DeadlineWarningsAndEscalationsReachBothParties) {
  auto hospital = Subscribe("org.stmarys");
  auto food = Subscribe("org.foodbank");
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());  // urgent: four hours to accept
  env_.clock().Advance(absl::Hours(3));
  ASSERT_TRUE(core_->Escalate().ok());
  env_.clock().Advance(absl::Hours(1));
  ASSERT_EQ(*core_->Escalate(), 1);  // a named recipient: nobody left, unassigned
  EXPECT_EQ(Kinds(Drain(food.get())),
            (std::vector<std::string>{"referral.received", "referral.deadline_warning"}));
  EXPECT_EQ(Kinds(Drain(hospital.get())),
            (std::vector<std::string>{"referral.routed", "referral.deadline_warning",
                                      "referral.unassigned"}));
}

TEST_F(NotificationTest, StopEndsEverySubscription) {
  auto food = Subscribe("org.foodbank");
  notes_->Stop();
  EXPECT_EQ(food->Next(absl::Seconds(5)).status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace careloop::notification
