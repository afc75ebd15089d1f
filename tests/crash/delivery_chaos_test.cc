// Delivery under chaos: several agencies' consumers connect, read, ack (or
// skip acks, or ack partly) and drop their streams at random, while two
// hospitals send referrals (some accepted by their recipients) and the hub
// is killed with SIGKILL and restarted several times. At the end every
// consumer drains, and what each agency received is compared with an oracle
// the test computes itself from the ledger (read through LedgerService),
// using its own list of delivered event types, not the service's code:
//   - every event the agency is entitled to arrived at least once;
//   - nothing else arrived;
//   - each stream delivered the agency's events in ledger order with no gap;
//   - nothing was sent again after it had been acknowledged (duplicates only
//     after missing acks or a restart).
// Seeded: CARELOOP_CHAOS_SEED (else time-based); the seed is printed on failure.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "careloop/v1/notification.grpc.pb.h"
#include "careloop/v1/referral.grpc.pb.h"
#include "services/ledger/remote_ledger.h"
#include "services/referral/sections.h"
#include "services/trust/envelope.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

// The test's own statement of what is delivered (docs/API.md).
const std::set<std::string> kDelivered = {"ReferralRouted",
                                          "StatusChanged",
                                          "ReferralViewed",
                                          "ReferralDelivered",
                                          "ReferralUnassigned",
                                          "ThreadMessage",
                                          "ConsentRevocationNotice",
                                          "BreakGlassInvoked",
                                          "ReviewBreakGlass",
                                          "RegisterAgency",
                                          "UpdateAgencyProfile",
                                          "SetAgencyStatus",
                                          "AddAgencyKey",
                                          "RevokeAgencyKey",
                                          "SetActor",
                                          "RemoveActor",
                                          "ReportCapacity",
                                          "WebhookDisabled",
                                          "ReferralDeadlineWarning"};

struct Agency {
  std::string id, kind, role;
  std::optional<trust::Ed25519PrivateKey> key;
};

// Where the hub is now (it moves to a new port on every restart).
class HubAddress {
 public:
  void Set(const std::string& a) {
    absl::MutexLock lock(&mu_);
    address_ = a;
    ++generation_;
  }
  std::string Get(uint64_t* generation = nullptr) {
    absl::MutexLock lock(&mu_);
    if (generation != nullptr) *generation = generation_;
    return address_;
  }

 private:
  absl::Mutex mu_;
  std::string address_;
  uint64_t generation_ = 0;  // hub restarts
};

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

bool Retryable(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
         st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         st.error_code() == grpc::StatusCode::CANCELLED;
}

// One consumer's view: every delivery, by stream session.
struct Received {
  uint64_t seq;
  uint32_t attempt;
  int session;
  uint64_t hub;                  // which run of the hub sent it
  uint64_t acked_when_received;  // what this client knew was acknowledged then
};

class Consumer {
 public:
  Consumer(std::string agency, HubAddress* hub, uint64_t seed)
      : agency_(std::move(agency)), hub_(hub), rng_(seed) {}

  // Random behaviour until `stop`.
  void RunChaos(const std::atomic<bool>& stop) {
    while (!stop.load()) Session(/*chaos=*/true, 0);
  }
  // Reads and acks everything until the acknowledged cursor reaches `last`.
  bool Drain(uint64_t last, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (acked_ < last && absl::Now() < end) Session(/*chaos=*/false, last);
    return acked_ >= last;
  }
  const std::vector<Received>& received() const { return received_; }
  const std::vector<std::string>& violations() const { return violations_; }
  uint64_t acked() const { return acked_; }

 private:
  std::unique_ptr<v1::NotificationService::Stub> Stub(uint64_t* generation) {
    return v1::NotificationService::NewStub(Channel(hub_->Get(generation)));
  }
  void Prepare(grpc::ClientContext* ctx, absl::Duration deadline) {
    ctx->AddMetadata("x-careloop-dev-agency", agency_);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }

  bool Ack(v1::NotificationService::Stub* stub, uint64_t seq) {
    grpc::ClientContext ctx;
    Prepare(&ctx, absl::Seconds(5));
    v1::AckRequest req;
    req.set_consumer("main");
    req.set_up_to_seq(seq);
    v1::AckResponse resp;
    grpc::Status st = stub->Ack(&ctx, req, &resp);
    if (!st.ok()) {
      if (!Retryable(st)) {
        violations_.push_back(
            absl::StrCat(agency_, ": ack ", seq, " refused: ", st.error_message()));
      }
      return false;
    }
    acked_ = std::max(acked_, resp.cursor());
    return true;
  }

  void Session(bool chaos, uint64_t last) {
    uint64_t hub = 0;
    auto stub = Stub(&hub);
    {
      grpc::ClientContext ctx;
      Prepare(&ctx, absl::Seconds(5));
      v1::CreateConsumerRequest req;
      req.set_consumer("main");
      v1::CreateConsumerResponse resp;
      grpc::Status st = stub->CreateConsumer(&ctx, req, &resp);
      if (!st.ok()) {
        absl::SleepFor(absl::Milliseconds(50));  // the hub is restarting
        return;
      }
      acked_ = std::max(acked_, resp.cursor());
    }
    const int session = ++sessions_;
    grpc::ClientContext ctx;
    // Chaos: streams end on their own after a random while.
    Prepare(&ctx, chaos ? absl::Milliseconds(std::uniform_int_distribution<int>(200, 1500)(rng_))
                        : absl::Seconds(2));
    v1::SubscribeRequest req;
    req.set_consumer("main");
    auto reader = stub->Subscribe(&ctx, req);
    v1::Notification n;
    std::vector<uint64_t> batch;
    int batch_size = std::uniform_int_distribution<int>(1, 40)(rng_);
    while (reader->Read(&n)) {
      received_.push_back({n.seq(), n.attempt(), session, hub, acked_});
      batch.push_back(n.seq());
      if (!chaos) {
        if (!Ack(stub.get(), n.seq())) break;
        if (acked_ >= last) break;
        continue;
      }
      if (static_cast<int>(batch.size()) < batch_size) continue;
      const int action = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (action < 60) {
        if (!Ack(stub.get(), batch.back())) break;
      } else if (action < 75) {
        if (!Ack(stub.get(), batch[batch.size() / 2])) break;  // part of it
      }  // else: no ack (go-back-N, or a later cumulative ack, covers it)
      batch.clear();
      batch_size = std::uniform_int_distribution<int>(1, 40)(rng_);
      if (std::uniform_int_distribution<int>(0, 99)(rng_) < 30) break;  // drop the stream
    }
    ctx.TryCancel();
    reader->Finish();
  }

  std::string agency_;
  HubAddress* hub_;
  std::mt19937_64 rng_;
  uint64_t acked_ = 0;
  int sessions_ = 0;
  std::vector<Received> received_;
  std::vector<std::string> violations_;
};

TEST(DeliveryChaos, EveryAgencyGetsEverythingItIsEntitledToInOrder) {
  uint64_t seed = absl::ToUnixNanos(absl::Now());
  if (const char* s = std::getenv("CARELOOP_CHAOS_SEED")) seed = std::stoull(s);
  SCOPED_TRACE(absl::StrCat("CARELOOP_CHAOS_SEED=", seed));
  std::mt19937_64 rng(seed);
  int referrals = 2000;
  if (const char* s = std::getenv("CARELOOP_CHAOS_REFERRALS")) referrals = std::stoi(s);
  const int kills = 4;

  TempDir dir;
  const std::vector<std::string> hub_args = {"--data-dir", dir.Sub("hub"), "--ack-timeout",
                                             "300ms"};
  std::string address, ledger_address;  // agencies' listener; the ledger's own socket
  auto hub = StartCareloopd(hub_args, &address, &ledger_address);
  ASSERT_TRUE(hub.ok()) << hub.status();
  HubAddress where;
  where.Set(address);
  const std::string admin_key = dir.Sub("hub/keys/hub-admin.pem");

  std::vector<Agency> agencies = {{"org.stmarys", "hospital", "sender"},
                                  {"org.clinic", "hospital", "sender"},
                                  {"org.foodbank", "community-agency", "receiver"},
                                  {"org.shelter", "community-agency", "receiver"},
                                  {"org.pantry", "community-agency", "receiver"},
                                  {"org.rides", "community-agency", "receiver"}};
  for (Agency& a : agencies) {
    const std::string pem = dir.Sub(a.id + ".pem");
    ASSERT_EQ(RunCli({"keys", "generate", "--out", pem}).exit_code, 0);
    std::vector<std::string> reg = {"agency",
                                    "register",
                                    "--sign-key",
                                    admin_key,
                                    "--id",
                                    a.id,
                                    "--name",
                                    a.id,
                                    "--kind",
                                    a.kind,
                                    "--agency-role",
                                    a.role,
                                    "--agency-public-key",
                                    pem,
                                    "--admin-user",
                                    "u-admin"};
    if (a.role == "receiver") reg = Concat(reg, {"--service", "food-insecurity"});
    CliResult r = CliAt(address, reg);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = CliAt(address, {"actor", "add", "--sign-key", admin_key, "--agency", a.id, "--user-id",
                        "u-staff", "--actor-role", a.role});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto key = trust::Ed25519PrivateKey::FromPem(ReadFileOrDie(pem));
    ASSERT_TRUE(key.ok());
    a.key = *key;
  }
  std::vector<const Agency*> receivers;
  for (const Agency& a : agencies)
    if (a.role == "receiver") receivers.push_back(&a);

  // Consumers start before the load and run through every restart.
  std::atomic<bool> stop_consumers{false};
  std::vector<std::unique_ptr<Consumer>> consumers;
  std::vector<std::thread> consumer_threads;
  for (const Agency& a : agencies) {
    consumers.push_back(std::make_unique<Consumer>(a.id, &where, rng()));
    consumer_threads.emplace_back(
        [c = consumers.back().get(), &stop_consumers] { c->RunChaos(stop_consumers); });
  }

  // The load: each hospital sends, retrying the same bytes until acknowledged.
  std::atomic<int> sent{0}, accepted{0};
  std::atomic<bool> load_failed{false};
  std::string load_error;
  absl::Mutex load_mu;
  auto call = [&](auto fn) {
    for (int attempt = 0; attempt < 400; ++attempt) {
      grpc::Status st = fn(v1::ReferralService::NewStub(Channel(where.Get())).get());
      if (st.ok()) return true;
      if (!Retryable(st)) {
        absl::MutexLock lock(&load_mu);
        load_error = st.error_message();
        load_failed = true;
        return false;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  };
  std::vector<std::thread> senders;
  for (int h = 0; h < 2; ++h) {
    senders.emplace_back([&, h, seed2 = rng()] {
      std::mt19937_64 r(seed2);
      const Agency& hospital = agencies[h];
      for (int i = h; i < referrals && !load_failed.load(); i += 2) {
        const Agency& to = *receivers[r() % receivers.size()];
        std::vector<v1::Section> sections(1);
        sections[0].set_section_id("needs");
        sections[0].set_category("social-needs");
        sections[0].set_media_type("text/plain");
        sections[0].set_content("food insecurity screen positive");
        v1::ReferralManifest m;
        m.set_referral_id(absl::StrCat("r-", i));
        m.mutable_subject()->set_authority(absl::StrCat(hospital.id, "/mrn"));
        m.mutable_subject()->set_value(absl::StrCat("mrn-", i));
        m.set_service_category("food-insecurity");
        m.set_reason("discharge");
        m.set_priority(v1::ROUTINE);
        m.set_purpose("care-coordination");
        m.mutable_routing()->set_recipient_agency(to.id);
        auto digests = referral::SealSections(&sections, referral::RandomBytes);
        ASSERT_TRUE(digests.ok());
        for (auto& d : *digests) *m.add_sections() = d;
        v1::Actor actor;
        actor.set_user_id("u-staff");
        actor.set_role("sender");
        v1::SubmitReferralRequest req;
        req.set_envelope(*trust::SignEnvelope(
            trust::NewEnvelope(m, hospital.id, actor, "k1", absl::Now(), m.referral_id()),
            *hospital.key));
        for (auto& s : sections) *req.add_sections() = s;
        if (!call([&](v1::ReferralService::Stub* stub) {
              grpc::ClientContext ctx;
              ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
              ctx.AddMetadata("x-careloop-dev-agency", hospital.id);
              v1::SubmitReferralResponse resp;
              return stub->Submit(&ctx, req, &resp);
            })) {
          return;
        }
        ++sent;
        if (r() % 5 < 2) {
          v1::UpdateReferralStatus u;
          u.set_sender_agency(hospital.id);
          u.set_referral_id(m.referral_id());
          u.set_status(v1::TASK_ACCEPTED);
          v1::Actor by;
          by.set_user_id("u-staff");
          by.set_role("receiver");
          v1::SubmitEnvelopeRequest up;
          up.set_envelope(*trust::SignEnvelope(
              trust::NewEnvelope(u, to.id, by, "k1", absl::Now(), absl::StrCat("acc-", i)),
              *to.key));
          if (!call([&](v1::ReferralService::Stub* stub) {
                grpc::ClientContext ctx;
                ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
                ctx.AddMetadata("x-careloop-dev-agency", to.id);
                v1::Receipt resp;
                return stub->UpdateStatus(&ctx, up, &resp);
              })) {
            return;
          }
          ++accepted;
        }
      }
    });
  }

  // kill -9 and restart while all of that runs.
  for (int k = 0; k < kills; ++k) {
    const int target = referrals * (k + 1) / (kills + 1);
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    while (sent.load() < target && !load_failed.load() && absl::Now() < give_up)
      absl::SleepFor(absl::Milliseconds(20));
    (*hub)->Signal(SIGKILL);
    ASSERT_TRUE((*hub)->Wait(absl::Seconds(30)).ok());
    hub = StartCareloopd(hub_args, &address, &ledger_address);
    ASSERT_TRUE(hub.ok()) << hub.status();
    where.Set(address);
  }
  for (auto& t : senders) t.join();
  {
    absl::MutexLock lock(&load_mu);
    ASSERT_FALSE(load_failed.load()) << load_error;
  }
  EXPECT_EQ(sent.load(), referrals);
  stop_consumers = true;
  for (auto& t : consumer_threads) t.join();

  // The oracle, from the ledger's events alone.
  ledger::RemoteLedger ledger(Channel(ledger_address));
  std::map<std::string, std::vector<uint64_t>> expected;
  auto oracle = [&] {
    expected.clear();
    for (uint64_t from = 1;;) {
      v1::ReadRequest r;
      r.set_from_seq(from);
      auto page = ledger.Read(r);
      ASSERT_TRUE(page.ok()) << page.status();
      if (page->events().empty()) break;
      for (const v1::Event& e : page->events()) {
        from = e.header().seq() + 1;
        if (!kDelivered.contains(e.header().type())) continue;
        for (const std::string& a : e.header().agencies()) expected[a].push_back(e.header().seq());
      }
    }
  };
  // Recipients drain first: their acks tell the hospitals (ReferralDelivered),
  // so the hospitals' share is computed after that.
  for (int round = 0; round < 2; ++round) {
    oracle();
    for (size_t i = 0; i < agencies.size(); ++i) {
      if ((agencies[i].role == "receiver") != (round == 0)) continue;
      const std::vector<uint64_t>& want = expected[agencies[i].id];
      ASSERT_FALSE(want.empty()) << agencies[i].id;
      ASSERT_TRUE(consumers[i]->Drain(want.back(), absl::Seconds(60)))
          << agencies[i].id << " acknowledged only up to " << consumers[i]->acked() << " of "
          << want.back();
    }
  }
  oracle();

  for (size_t i = 0; i < agencies.size(); ++i) {
    const std::string& id = agencies[i].id;
    Consumer& c = *consumers[i];
    const std::vector<uint64_t>& want = expected[id];
    for (const std::string& v : c.violations()) ADD_FAILURE() << v;
    std::map<uint64_t, size_t> index;  // seq -> position in the oracle's list
    for (size_t k = 0; k < want.size(); ++k) index[want[k]] = k;
    std::map<uint64_t, uint64_t> got;  // seq -> the hub run that first sent it
    int duplicates = 0, raced = 0;
    int prev_session = -1;
    size_t prev_pos = 0;
    for (const Received& r : c.received()) {
      auto it = index.find(r.seq);
      if (it == index.end()) {
        ADD_FAILURE() << id << " was sent seq " << r.seq << ", which is not for it";
        continue;
      }
      auto [first, fresh] = got.insert({r.seq, r.hub});
      if (!fresh) {
        ++duplicates;
        // Sent again: by go-back-N (attempt raised) or by a restarted hub.
        EXPECT_TRUE(r.attempt > 1 || r.hub != first->second)
            << id << ": seq " << r.seq << " came again with attempt 1 from the same hub run";
      }
      if (r.seq <= r.acked_when_received) {
        // Only a go-back-N resend that was on its way when the ack landed.
        ++raced;
        EXPECT_GT(r.attempt, 1u) << id << ": seq " << r.seq
                                 << " was sent after it was acknowledged, and not as a resend";
      }
      if (r.session == prev_session) {
        // The next one in the agency's order (skipping only what was
        // acknowledged meanwhile), or a go-back-N resend (an earlier,
        // unacknowledged one, sent again).
        const bool next = it->second > prev_pos && (it->second == prev_pos + 1 ||
                                                    want[it->second - 1] <= r.acked_when_received);
        const bool go_back = it->second <= prev_pos && r.attempt > 1;
        EXPECT_TRUE(next || go_back)
            << id << ": within one stream, seq " << r.seq << " (attempt " << r.attempt
            << ") came after seq " << want[prev_pos] << ": out of order or a gap";
      }
      prev_session = r.session;
      prev_pos = it->second;
    }
    EXPECT_EQ(got.size(), want.size()) << id << " missed events";
    std::cout << id << ": " << want.size() << " events, " << c.received().size() << " deliveries ("
              << duplicates << " again after missing acks or restarts, " << raced
              << " of them resends that crossed an ack)\n";
  }
  std::cout << "referrals " << sent.load() << ", accepted " << accepted.load() << ", hub killed "
            << kills << " times, seed " << seed << "\n";
}

}  // namespace
}  // namespace careloop::testing
