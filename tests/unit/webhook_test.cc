// Webhooks against a real HTTP server on loopback, with real libcurl, a real
// ledger and an injected clock: down then up is delivered in order with a
// Standard Webhooks signature that verifies with the published key; the
// retry schedule is followed (also across a restart); failing past the
// period disables the endpoint, tells the agency and dead-letters what it
// missed; a replay sends it again; bad changes are refused writing nothing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "services/notification/webhooks.h"
#include "tests/support/http_server.h"
#include "tests/support/referral_fixture.h"

namespace careloop::notification {
namespace {

using careloop::testing::ReferralFixture;
using careloop::testing::TestHttpServer;
using nlohmann::json;

class WebhookTest : public ReferralFixture {
 protected:
  void SetUp() override {
    ReferralFixture::SetUp();
    notes_ = std::make_unique<NotificationCore>(env_.ledger(), core_.get(), &env_.clock());
    ASSERT_TRUE(notes_->Start().ok());
    key_ = *trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x0c'));
    StartWebhooks();
  }
  void TearDown() override {
    hooks_.reset();
    notes_.reset();
  }
  void StartWebhooks() {
    WebhookOptions o;
    o.disable_after = absl::Hours(3);
    o.request_timeout = absl::Seconds(5);
    o.outbound.allow_private = true;  // dev mode: the receivers are on loopback
    hooks_ = std::make_unique<Webhooks>(env_.ledger(), notes_.get(), env_.directory_state(),
                                        &env_.clock(), *key_, NewCurlPoster(o.outbound), o);
  }

  absl::Status Set(const std::string& url, bool enabled = true,
                   const std::string& agency = "org.foodbank") {
    v1::SetWebhook w;
    w.set_agency_id(agency);
    w.set_url(url);
    w.set_enabled(enabled);
    return hooks_->Submit(env_.SignAsHub(w)).status();
  }
  int Run() {
    // Webhooks read only what the ledger's tail has seen: let it catch up.
    EXPECT_TRUE(notes_->WaitForTail(env_.ledger()->size(), absl::Seconds(30)).ok());
    auto n = hooks_->RunOnce();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(-1);
  }
  // Runs passes until nothing more is posted.
  int RunAll() {
    int total = 0;
    for (int i = 0; i < 100; ++i) {
      int n = Run();
      if (n <= 0) break;
      total += n;
    }
    return total;
  }

  // The Standard Webhooks check a receiver makes with the published key.
  bool Verifies(const TestHttpServer::Request& r) {
    const std::string whpk = hooks_->Key().public_key();
    std::string raw;
    if (whpk.rfind("whpk_", 0) != 0 || !absl::Base64Unescape(whpk.substr(5), &raw)) return false;
    auto pub = trust::Ed25519PublicKey::FromRaw(raw);
    const std::string sig_header = r.headers.at("webhook-signature");
    if (sig_header.rfind("v1a,", 0) != 0) return false;
    std::string sig;
    if (!absl::Base64Unescape(sig_header.substr(4), &sig)) return false;
    return pub.ok() && pub->Verify(absl::StrCat(r.headers.at("webhook-id"), ".",
                                                r.headers.at("webhook-timestamp"), ".", r.body),
                                   sig);
  }

  std::unique_ptr<NotificationCore> notes_;
  std::unique_ptr<Webhooks> hooks_;
  std::optional<trust::Ed25519PrivateKey> key_;
};

TEST_F(WebhookTest, DownThenUpIsDeliveredSignedInOrderOnTheSchedule) {
  TestHttpServer server(/*up=*/false);
  ASSERT_TRUE(Set(server.Url()).ok());
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  ASSERT_TRUE(core_->Submit(Referral("r-2", "org.foodbank", "000124")).ok());
  // The endpoint is down: the first try fails, the next is due in 5 s.
  EXPECT_EQ(Run(), 1);
  EXPECT_EQ(Count("WebhookFailing"), 1);
  env_.clock().Advance(absl::Seconds(4));
  EXPECT_EQ(Run(), 0) << "not before the schedule says";
  env_.clock().Advance(absl::Seconds(1));
  EXPECT_EQ(Run(), 1);
  EXPECT_EQ(Count("WebhookFailing"), 2);
  // A restart keeps the schedule: the third try is due 5 min after the second.
  hooks_.reset();
  StartWebhooks();
  env_.clock().Advance(absl::Minutes(4));
  EXPECT_EQ(Run(), 0);
  auto st = hooks_->Status("org.foodbank");
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->attempts(), 2u);
  EXPECT_GT((*st)->failing_since_unix_nanos(), 0);
  server.Up();
  env_.clock().Advance(absl::Minutes(1));
  EXPECT_GE(RunAll(), 2);
  auto got = server.requests();
  ASSERT_GE(got.size(), 2u);
  std::vector<std::string> referrals;
  uint64_t last = 0;
  for (const auto& r : got) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/hook");
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_TRUE(Verifies(r)) << "signature of webhook " << r.headers.at("webhook-id");
    json body = json::parse(r.body);
    const uint64_t seq = std::stoull(body["seq"].get<std::string>());
    EXPECT_EQ(r.headers.at("webhook-id"), absl::StrCat(seq)) << "the id is the seq";
    EXPECT_GT(seq, last) << "in order";
    last = seq;
    if (body["kind"] == "referral.received") referrals.push_back(body["referral"]);
  }
  EXPECT_EQ(referrals, (std::vector<std::string>{"org.stmarys/r-1", "org.stmarys/r-2"}));
  // The first delivery was its third attempt.
  EXPECT_EQ(json::parse(got[0].body)["attempt"], 3);
  // A forged body does not verify.
  auto forged = got[0];
  forged.body[forged.body.size() / 2] ^= 1;
  EXPECT_FALSE(Verifies(forged));
  // Recovered; the cursor moved; the referral is delivered for its sender.
  EXPECT_EQ(Count("WebhookRecovered"), 1);
  st = hooks_->Status("org.foodbank");
  EXPECT_EQ((*st)->attempts(), 0u);
  EXPECT_EQ((*st)->cursor(), last);
  EXPECT_GT(core_->View("org.stmarys/r-1", "org.stmarys")->delivered_unix_nanos(), 0);
  // Nothing is sent twice.
  const size_t before = server.requests().size();
  env_.clock().Advance(absl::Hours(1));
  EXPECT_EQ(RunAll(), 0);
  EXPECT_EQ(server.requests().size(), before);
}

TEST_F(WebhookTest, FailingPastThePeriodDisablesDeadLettersAndReplays) {
  // The agency also has a gRPC consumer: that is how it is told.
  v1::CreateConsumerRequest c;
  c.set_consumer("main");
  c.set_start_after_seq(env_.ledger()->size());
  ASSERT_TRUE(notes_->CreateConsumer(c, "org.foodbank").ok());
  TestHttpServer server;
  server.AnswerWith(503);
  ASSERT_TRUE(Set(server.Url()).ok());
  ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
  ASSERT_TRUE(core_->Submit(Referral("r-2", "org.foodbank", "000124")).ok());
  // Tries at 0, 5 s, 5 min 5 s, 35 min 5 s and 2 h 35 min 5 s; the next is
  // due 5 h later, past the 3 h period: disabled instead.
  for (absl::Duration step : {absl::ZeroDuration(), absl::Seconds(5), absl::Minutes(5),
                              absl::Minutes(30), absl::Hours(2), absl::Hours(5)}) {
    env_.clock().Advance(step);
    Run();
  }
  EXPECT_EQ(Count("WebhookDisabled"), 1);
  auto st = hooks_->Status("org.foodbank");
  EXPECT_FALSE((*st)->enabled());
  EXPECT_TRUE((*st)->disabled_by_hub());
  const size_t posted = server.requests().size();
  EXPECT_EQ(posted, 5u) << "one per scheduled try, all for the first event";
  env_.clock().Advance(absl::Hours(10));
  EXPECT_EQ(Run(), 0) << "a disabled endpoint gets nothing";

  v1::SubscribeRequest s;
  s.set_consumer("main");
  auto sub = notes_->Subscribe(s, "org.foodbank");
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(notes_->WaitForTail(env_.ledger()->size(), absl::Seconds(30)).ok());
  std::vector<std::string> kinds;
  while (true) {
    auto batch = (*sub)->Next(absl::ZeroDuration());
    ASSERT_TRUE(batch.ok());
    if (batch->empty()) break;
    for (const auto& n : *batch) kinds.push_back(n.kind());
  }
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "delivery.disabled"), kinds.end());

  v1::ListDeadLettersRequest list;
  auto dead = hooks_->ListDeadLetters(list, "org.foodbank");
  ASSERT_TRUE(dead.ok()) << dead.status();
  ASSERT_EQ(dead->ranges_size(), 1);
  // A new webhook starts at the agency's first event: its registration,
  // then the two referrals.
  EXPECT_EQ(dead->ranges(0).events(), 3u);
  EXPECT_NE(dead->ranges(0).reason().find("HTTP 503"), std::string::npos);
  EXPECT_EQ(hooks_->ListDeadLetters(list, "org.shelter")->ranges_size(), 0);
  list.set_agency_id("org.foodbank");
  EXPECT_EQ(hooks_->ListDeadLetters(list, "org.shelter").status().code(),
            absl::StatusCode::kPermissionDenied);

  // Fixed and re-enabled: what came since is delivered; the dead range
  // only when replayed.
  server.AnswerWith(200);
  ASSERT_TRUE(Set(server.Url()).ok());
  RunAll();
  for (size_t i = posted; i < server.requests().size(); ++i) {
    EXPECT_NE(json::parse(server.requests()[i].body).value("kind", ""), "referral.received");
  }
  v1::ReplayDeadLetters replay;
  replay.set_agency_id("org.foodbank");
  replay.set_from_seq(dead->ranges(0).from_seq());
  replay.set_to_seq(dead->ranges(0).to_seq());
  ASSERT_TRUE(hooks_->Submit(env_.SignAsHub(replay)).ok());
  const size_t before_replay = server.requests().size();
  RunAll();
  std::vector<std::string> replayed;
  for (size_t i = before_replay; i < server.requests().size(); ++i) {
    json b = json::parse(server.requests()[i].body);
    EXPECT_TRUE(Verifies(server.requests()[i]));
    if (b.value("kind", "") == "referral.received") replayed.push_back(b["referral"]);
  }
  EXPECT_EQ(replayed, (std::vector<std::string>{"org.stmarys/r-1", "org.stmarys/r-2"}));
  EXPECT_EQ(Count("DeadLettersReplayed"), 1);
  dead = hooks_->ListDeadLetters(list, "org.foodbank");
  EXPECT_GT(dead->ranges(0).replayed_unix_nanos(), 0);
}

TEST_F(WebhookTest, BadChangesAreRefusedWritingNothing) {
  const uint64_t size = env_.ledger()->size();
  for (const char* url : {"http://example.org/hook", "ftp://127.0.0.1/x", "https://", "https://a b",
                          "http://127.0.0.1.evil.org/"}) {
    EXPECT_EQ(Set(url).code(), absl::StatusCode::kInvalidArgument) << url;
  }
  // Only the agency's admin or the hub admin: a receiver may not.
  v1::SetWebhook w;
  w.set_agency_id("org.foodbank");
  w.set_url("https://hooks.example.org/careloop");
  w.set_enabled(true);
  EXPECT_EQ(hooks_->Submit(env_.Sign(w, "org.foodbank", "receiver")).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Nor for another agency, with any role.
  w.set_agency_id("org.shelter");
  EXPECT_EQ(hooks_->Submit(env_.Sign(w, "org.stmarys", "admin")).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A replay of nothing dead-lettered.
  v1::ReplayDeadLetters replay;
  replay.set_agency_id("org.foodbank");
  replay.set_from_seq(1);
  replay.set_to_seq(5);
  EXPECT_EQ(hooks_->Submit(env_.SignAsHub(replay)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(env_.ledger()->size(), size);
  EXPECT_EQ(hooks_->Test("org.foodbank").status().code(), absl::StatusCode::kFailedPrecondition);
  auto none = hooks_->Status("org.foodbank");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(OutboundPolicyTest, ProductionReachesOnlyPublicHostsOrTheAllowList) {
  const OutboundPolicy production;
  for (const char* url :
       {"http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://localhost/hook",
        "https://api.localhost/hook", "https://10.1.2.3/hook", "https://172.16.0.9/hook",
        "https://192.168.1.1/hook", "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook", "https://0.0.0.0/hook", "https://[::1]/hook",
        "https://[fd00::1]/hook", "https://[fe80::1]/hook", "https://[::ffff:10.0.0.1]/hook",
        "http://hooks.example.org/careloop", "https://user@hooks.example.org/careloop"}) {
    EXPECT_EQ(ValidateWebhookUrl(url, production).code(), absl::StatusCode::kInvalidArgument)
        << url;
  }
  for (const char* url : {"https://hooks.example.org/careloop", "https://203.0.113.7:8443/x",
                          "https://[2001:db8::1]/x"}) {
    EXPECT_TRUE(ValidateWebhookUrl(url, production).ok()) << url;
  }
  const OutboundPolicy listed{false, {"gateway.agency.internal", "10.1.2.3"}};
  EXPECT_TRUE(ValidateWebhookUrl("https://10.1.2.3/hook", listed).ok());
  EXPECT_TRUE(ValidateWebhookUrl("http://gateway.agency.internal:8080/hook", listed).ok());
  EXPECT_FALSE(ValidateWebhookUrl("https://10.1.2.4/hook", listed).ok());
  const OutboundPolicy dev{true, {}};
  EXPECT_TRUE(ValidateWebhookUrl("http://127.0.0.1:8080/hook", dev).ok());
  EXPECT_TRUE(ValidateWebhookUrl("https://10.1.2.3/hook", dev).ok());
  EXPECT_FALSE(ValidateWebhookUrl("http://10.1.2.3/hook", dev).ok()) << "http only to loopback";
  for (const char* ip : {"8.8.8.8", "203.0.113.7", "2001:db8::1", "2606:4700::1111"})
    EXPECT_TRUE(IsPublicAddress(ip)) << ip;
  for (const char* ip : {"127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.1.1",
                         "100.127.0.1", "224.0.0.1", "255.255.255.255", "::", "::1", "fc00::1",
                         "fe80::1", "ff02::1", "::ffff:127.0.0.1", "not an address"})
    EXPECT_FALSE(IsPublicAddress(ip)) << ip;
}

TEST(OutboundPolicyTest, AConnectionToAPrivateAddressSendsNothing) {
  // What a name resolving to a private address (or rebinding to one) meets:
  // the poster checks the address it connected to before sending a byte.
  TestHttpServer server;
  HttpResult refused =
      NewCurlPoster(OutboundPolicy{})->Post(server.Url(), {}, "{}", absl::Seconds(5));
  EXPECT_FALSE(refused.error.empty());
  EXPECT_TRUE(server.requests().empty());
  // The same with the host on the operator's allow-list: delivered.
  HttpResult allowed = NewCurlPoster(OutboundPolicy{false, {"127.0.0.1"}})
                           ->Post(server.Url(), {}, "{}", absl::Seconds(5));
  EXPECT_TRUE(allowed.error.empty()) << allowed.error;
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST_F(WebhookTest, TestSendsASignedTestEvent) {
  TestHttpServer server;
  ASSERT_TRUE(Set(server.Url()).ok());
  auto r = hooks_->Test("org.foodbank");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->http_status(), 204);
  EXPECT_TRUE(r->error().empty());
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].headers.at("webhook-id"), r->webhook_id());
  EXPECT_TRUE(Verifies(server.requests()[0]));
  EXPECT_EQ(json::parse(server.requests()[0].body)["kind"], "webhook.test");
}

}  // namespace
}  // namespace careloop::notification
