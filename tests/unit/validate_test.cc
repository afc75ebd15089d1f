// Append validation: each rule refuses with INVALID_ARGUMENT and names the
// problem and its position.
#include "storage/validate.h"

#include <gtest/gtest.h>

namespace careloop::storage {
namespace {

v1::AppendRequest One(const std::string& stream = "referral/r-1") {
  v1::AppendRequest r;
  auto* e = r.add_events();
  e->set_stream(stream);
  e->set_type("ReferralSubmitted");
  e->set_payload("p");
  return r;
}

void ExpectInvalid(const v1::AppendRequest& r, const std::string& fragment) {
  absl::Status s = ValidateAppend(r, LedgerLimits());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << fragment;
  EXPECT_NE(std::string(s.message()).find(fragment), std::string::npos) << s;
}

TEST(Validate, AcceptsWellFormed) {
  v1::AppendRequest r = One();
  r.mutable_events(0)->add_agencies("org.stmarys");
  r.mutable_events(0)->set_subject("s-9f2");
  auto* p = r.add_preconditions();
  p->set_stream("referral/r-1");
  p->set_must_not_exist(true);
  EXPECT_TRUE(ValidateAppend(r, LedgerLimits()).ok());
}

TEST(Validate, StreamNames) {
  for (const char* bad : {"", "Referral/x", "referral//x", "referral/", "/x", "referral/a b",
                          "ref\x01", "9abc/x", "referral/é"}) {
    EXPECT_FALSE(ValidateStreamName(bad).ok()) << bad;
  }
  EXPECT_FALSE(ValidateStreamName(std::string(257, 'a')).ok());
  for (const char* good :
       {"referral/r-1", "consent/subj:123", "agency/org.stmarys", "dedupe/a/b/c", "x"}) {
    EXPECT_TRUE(ValidateStreamName(good).ok()) << good;
  }
}

TEST(Validate, EveryRule) {
  ExpectInvalid(v1::AppendRequest(), "empty append");
  ExpectInvalid(One("Bad"), "event 0: stream");
  v1::AppendRequest r = One();
  r.mutable_events(0)->set_type("");
  ExpectInvalid(r, "event type");
  r = One();
  r.mutable_events(0)->add_agencies("Org_Bad");
  ExpectInvalid(r, "agency id");
  r = One();
  r.mutable_events(0)->add_agencies("org.a");
  r.mutable_events(0)->add_agencies("org.a");
  ExpectInvalid(r, "twice");
  r = One();
  r.mutable_events(0)->set_subject("name with spaces");
  ExpectInvalid(r, "subject id");
  r = One();
  r.mutable_events(0)->set_payload(std::string((1 << 20) + 1, 'x'));
  ExpectInvalid(r, "payload is");
  r = v1::AppendRequest();
  for (int i = 0; i < 1001; ++i) *r.add_events() = One().events(0);
  ExpectInvalid(r, "1001 events");
  r = v1::AppendRequest();
  for (int i = 0; i < 9; ++i) {
    auto* e = r.add_events();
    *e = One().events(0);
    e->set_payload(std::string(1 << 20, 'x'));
  }
  ExpectInvalid(r, "batch is");
  r = One();
  r.add_preconditions()->set_stream("referral/r-1");
  ExpectInvalid(r, "precondition 0: set expected_version or must_not_exist");
  r = One();
  auto* p = r.add_preconditions();
  p->set_stream("referral/r-1");
  p->set_must_not_exist(false);
  ExpectInvalid(r, "must be true");
  r = One();
  r.set_idempotency_key(std::string(257, 'k'));
  ExpectInvalid(r, "idempotency key");
  r = One();
  r.add_cursor_updates()->set_name("c/a");
  r.add_cursor_updates()->set_name("c/a");
  ExpectInvalid(r, "updated twice");
}

}  // namespace
}  // namespace careloop::storage
