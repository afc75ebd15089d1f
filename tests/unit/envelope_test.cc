// Envelope signing and verification: each failure in the promised order with
// its own status and message, idempotency first, key rotation, cross-type
// replay, and every byte of a sample envelope flipped.
#include "services/trust/envelope.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "careloop/v1/ledger.pb.h"

namespace careloop::trust {
namespace {

// In-memory stand-ins for the directory and the hub's message log: this test
// is about the verifier, not about where agencies and seen messages live.
class MapDirectory final : public EnvelopeDirectory {
 public:
  absl::StatusOr<std::optional<AgencyView>> FindAgency(absl::string_view id) override {
    auto it = agencies.find(std::string(id));
    if (it == agencies.end()) return std::optional<AgencyView>();
    return std::optional<AgencyView>(it->second);
  }
  std::map<std::string, AgencyView> agencies;
};

class MapLog final : public MessageLog {
 public:
  absl::StatusOr<std::optional<SeenMessage>> Find(absl::string_view sender,
                                                  absl::string_view id) override {
    auto it = seen.find(absl::StrCat(sender, "/", id));
    if (it == seen.end()) return std::optional<SeenMessage>();
    return std::optional<SeenMessage>(it->second);
  }
  std::map<std::string, SeenMessage> seen;
};

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
constexpr char kTypeA[] = "careloop.v1.EventInput";
constexpr char kTypeB[] = "careloop.v1.Precondition";

class EnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key1_ = *Ed25519PrivateKey::FromSeed(std::string(32, '\x01'));
    key2_ = *Ed25519PrivateKey::FromSeed(std::string(32, '\x02'));
    AgencyView a;
    a.actor_roles["u-ana"] = {"sender", "receiver"};
    a.actor_roles["u-bo"] = {"admin"};
    a.keys["k1"] = KeyView{key1_->public_key().raw(), absl::InfinitePast(), absl::InfiniteFuture(),
                           std::nullopt};
    dir_.agencies["org.stmarys"] = a;
    policy_.roles_by_payload_type[kTypeA] = {"sender"};
    policy_.roles_by_payload_type[kTypeB] = {"sender"};
  }

  v1::Envelope Unsigned(const std::string& type = kTypeA) {
    v1::Envelope e;
    v1::EventInput payload;
    payload.set_stream("referral/r-1");
    payload.set_type("ReferralSubmitted");
    if (type == kTypeA) {
      e.set_payload(payload.SerializeAsString());
    } else {
      v1::Precondition p;
      p.set_stream("referral/r-1");
      p.set_must_not_exist(true);
      e.set_payload(p.SerializeAsString());
    }
    e.set_payload_type(type);
    e.set_sender_agency("org.stmarys");
    e.mutable_actor()->set_user_id("u-ana");
    e.mutable_actor()->set_display_name("Ana Ruiz, RN");
    e.mutable_actor()->set_role("sender");
    e.set_key_id("k1");
    e.set_created_unix_nanos(absl::ToUnixNanos(kNow - absl::Seconds(3)));
    e.set_message_id("msg-0001");
    return e;
  }
  std::string Signed(const v1::Envelope& e, const Ed25519PrivateKey* key = nullptr) {
    auto bytes = SignEnvelope(e, key ? *key : *key1_);
    EXPECT_TRUE(bytes.ok());
    return *bytes;
  }
  absl::StatusOr<VerifiedEnvelope> Verify(const std::string& bytes, absl::Time at = kNow) {
    return VerifyEnvelope(bytes, policy_, dir_, log_, at);
  }
  void ExpectRejected(const std::string& bytes, absl::StatusCode code, const std::string& fragment,
                      absl::Time at = kNow) {
    auto r = Verify(bytes, at);
    ASSERT_FALSE(r.ok()) << fragment;
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(std::string(r.status().message()).find(fragment), std::string::npos) << r.status();
  }

  std::optional<Ed25519PrivateKey> key1_, key2_;
  MapDirectory dir_;
  MapLog log_;
  RpcPolicy policy_;
};

TEST_F(EnvelopeTest, AValidEnvelopeVerifiesAndItsPayloadParses) {
  auto r = Verify(Signed(Unsigned()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate);
  ASSERT_NE(r->payload, nullptr);
  EXPECT_EQ(r->payload->GetDescriptor()->full_name(), kTypeA);
  EXPECT_EQ(static_cast<v1::EventInput&>(*r->payload).stream(), "referral/r-1");
}

TEST_F(EnvelopeTest, SigningInputIsDomainSeparatedAndLengthPrefixed) {
  v1::Envelope e = Unsigned();
  std::string in = SigningInput(e);
  EXPECT_EQ(in.substr(0, 4), std::string("\0\0\0\x14", 4));
  EXPECT_EQ(in.substr(4, 20), "careloop.v1.envelope");
  // Moving a byte from one field to the next changes the input.
  v1::Envelope moved = e;
  moved.mutable_actor()->set_user_id("u-an");
  moved.mutable_actor()->set_display_name("aAna Ruiz, RN");
  EXPECT_NE(SigningInput(moved), in);
  // The signature itself is not signed.
  e.set_signature("anything");
  EXPECT_EQ(SigningInput(e), in);
}

TEST_F(EnvelopeTest, EachFailureHasItsOwnStatusAndMessageInOrder) {
  ExpectRejected("not an envelope at all \xff\xff", absl::StatusCode::kInvalidArgument,
                 "envelope:");
  {
    std::string bytes = Signed(Unsigned());
    bytes.append("\xa0\x06\x01", 3);  // field 100, varint 1: unknown to this hub
    ExpectRejected(bytes, absl::StatusCode::kInvalidArgument, "fields this hub does not know");
  }
  {
    v1::Envelope e = Unsigned();
    e.mutable_actor()->GetReflection()->MutableUnknownFields(e.mutable_actor())->AddVarint(77, 1);
    ExpectRejected(Signed(e), absl::StatusCode::kInvalidArgument, "fields this hub does not know");
  }
  {
    v1::Envelope e = Unsigned();
    e.set_sender_agency("org.unknown");
    ExpectRejected(Signed(e), absl::StatusCode::kUnauthenticated, "unknown agency org.unknown");
  }
  {
    dir_.agencies["org.stmarys"].active = false;
    ExpectRejected(Signed(Unsigned()), absl::StatusCode::kPermissionDenied, "is suspended");
    dir_.agencies["org.stmarys"].active = true;
  }
  {
    v1::Envelope e = Unsigned();
    e.mutable_actor()->set_user_id("u-nobody");
    ExpectRejected(Signed(e), absl::StatusCode::kPermissionDenied, "unknown actor u-nobody");
  }
  {
    v1::Envelope e = Unsigned();
    e.mutable_actor()->set_role("admin");  // u-ana does not hold it
    ExpectRejected(Signed(e), absl::StatusCode::kPermissionDenied, "does not hold the role admin");
  }
  {
    v1::Envelope e = Unsigned();
    e.mutable_actor()->set_role("receiver");  // held, but not allowed for this type
    ExpectRejected(Signed(e), absl::StatusCode::kPermissionDenied,
                   "may not send careloop.v1.EventInput");
  }
  {
    v1::Envelope e = Unsigned();
    e.set_key_id("k9");
    ExpectRejected(Signed(e), absl::StatusCode::kUnauthenticated, "unknown key k9");
  }
  {
    ExpectRejected(Signed(Unsigned(), &*key2_), absl::StatusCode::kUnauthenticated,
                   "bad signature");
  }
  {
    v1::Envelope e = Unsigned();
    e.set_created_unix_nanos(absl::ToUnixNanos(kNow + absl::Minutes(6)));
    ExpectRejected(Signed(e), absl::StatusCode::kFailedPrecondition, "is more than 5m");
    e.set_created_unix_nanos(absl::ToUnixNanos(kNow - absl::Minutes(6)));
    ExpectRejected(Signed(e), absl::StatusCode::kFailedPrecondition, "check the sender's clock");
  }
  {
    policy_.roles_by_payload_type.erase(kTypeB);
    ExpectRejected(Signed(Unsigned(kTypeB)), absl::StatusCode::kInvalidArgument,
                   "payload type careloop.v1.Precondition is not accepted here");
    policy_.roles_by_payload_type[kTypeB] = {"sender"};
  }
  {
    v1::Envelope e = Unsigned();
    e.set_payload("\xff\xff\xff");
    ExpectRejected(Signed(e), absl::StatusCode::kInvalidArgument,
                   "does not parse as careloop.v1.EventInput");
  }
}

TEST_F(EnvelopeTest, IdempotencyComesFirst) {
  std::string bytes = Signed(Unsigned());
  log_.seen["org.stmarys/msg-0001"] = SeenMessage{bytes, 42};
  // The same bytes: the original answer, even after the skew has passed and the
  // agency was suspended since.
  dir_.agencies["org.stmarys"].active = false;
  auto r = Verify(bytes, kNow + absl::Hours(3));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->duplicate);
  EXPECT_EQ(r->original_seq, 42u);
  // The same id with other bytes.
  v1::Envelope other = Unsigned();
  other.set_payload(other.payload() + "\x08\x01");
  ExpectRejected(Signed(other), absl::StatusCode::kAlreadyExists,
                 "already used for a different envelope (seq 42)");
}

TEST_F(EnvelopeTest, CrossTypeReplayIsRejected) {
  // A valid type-B envelope whose type is relabelled A (whose payload would
  // parse the same bytes) fails the signature, never reaching the payload.
  v1::Envelope b = Unsigned(kTypeB);
  std::string bytes = Signed(b);
  v1::Envelope relabelled = *ParseEnvelope(bytes, EnvelopeLimits());
  relabelled.set_payload_type(kTypeA);
  ExpectRejected(relabelled.SerializeAsString(), absl::StatusCode::kUnauthenticated,
                 "bad signature");
}

TEST_F(EnvelopeTest, KeyRotationAndRevocationAtAnInstant) {
  const absl::Time t = kNow;
  AgencyView& a = dir_.agencies["org.stmarys"];
  // Two keys valid at once: no downtime while senders switch.
  a.keys["k2"] =
      KeyView{key2_->public_key().raw(), t - absl::Hours(1), absl::InfiniteFuture(), std::nullopt};
  v1::Envelope with2 = Unsigned();
  with2.set_key_id("k2");
  EXPECT_TRUE(Verify(Signed(with2, &*key2_)).ok());
  EXPECT_TRUE(Verify(Signed(Unsigned())).ok());
  // k1 revoked at t: received at t fails, received just before t passes.
  a.keys["k1"].revoked_at = t;
  std::string old = Signed(Unsigned());
  ExpectRejected(old, absl::StatusCode::kUnauthenticated, "was revoked at", t);
  EXPECT_TRUE(Verify(old, t - absl::Nanoseconds(1)).ok());
  // Not yet valid, and expired.
  a.keys["k2"].not_before = t + absl::Minutes(1);
  ExpectRejected(Signed(with2, &*key2_), absl::StatusCode::kUnauthenticated, "is not valid at", t);
  a.keys["k2"].not_before = t - absl::Hours(1);
  a.keys["k2"].not_after = t;
  ExpectRejected(Signed(with2, &*key2_), absl::StatusCode::kUnauthenticated, "is not valid at", t);
}

// Flipping any single byte of a sample envelope never verifies, and each
// byte inside a field's value fails with the status that field's check gives.
TEST_F(EnvelopeTest, EveryByteFlipIsRejectedWithTheFieldsStatus) {
  v1::Envelope e = Unsigned();
  const std::string bytes = Signed(e);
  // Where each field's value lies in the encoding (fields are serialized in
  // field-number order; each value here is shorter than 128 bytes).
  struct Span {
    size_t begin, end;
    absl::StatusCode code;
  };
  std::vector<Span> spans;
  auto value_span = [&](const std::string& value, absl::StatusCode code) {
    size_t at = bytes.find(value);
    ASSERT_NE(at, std::string::npos);
    spans.push_back({at, at + value.size(), code});
  };
  value_span(e.payload(), absl::StatusCode::kUnauthenticated);  // signature covers it
  value_span(e.payload_type(),
             absl::StatusCode::kUnauthenticated);  // role check finds no policy entry...
  value_span(e.key_id(), absl::StatusCode::kUnauthenticated);            // unknown key
  value_span(e.message_id(), absl::StatusCode::kUnauthenticated);        // new id: bad signature
  value_span(e.sender_agency(), absl::StatusCode::kUnauthenticated);     // unknown agency
  value_span(e.actor().user_id(), absl::StatusCode::kPermissionDenied);  // unknown actor
  value_span(e.actor().role(), absl::StatusCode::kPermissionDenied);     // role not held
  value_span(e.actor().display_name(), absl::StatusCode::kUnauthenticated);  // bad signature
  std::string sig = *ParseEnvelope(bytes, EnvelopeLimits()).value().mutable_signature();
  value_span(sig, absl::StatusCode::kUnauthenticated);  // bad signature
  int checked = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    auto r = Verify(bad);
    ASSERT_FALSE(r.ok()) << "byte " << i << " flipped still verifies";
    for (const Span& s : spans) {
      if (i >= s.begin && i < s.end) {
        EXPECT_EQ(r.status().code(), s.code) << "byte " << i << ": " << r.status();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 120);
}

}  // namespace
}  // namespace careloop::trust
