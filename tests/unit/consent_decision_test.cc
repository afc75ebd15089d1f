// Consent decision tables: one test per rule of issue 4, including the exact
// boundary instants of periods and revocations.
#include <gtest/gtest.h>

#include "services/consent/decision.h"

namespace careloop::consent {
namespace {

const absl::Time T0 = absl::FromUnixSeconds(1'800'000'000);
const Recipient kFoodBank{"org.foodbank", v1::COMMUNITY_AGENCY};
const Recipient kClinic{"org.clinic", v1::HOSPITAL};

int64_t N(absl::Time t) { return absl::ToUnixNanos(t); }

v1::Consent Permit(const std::string& id, std::vector<std::string> categories = {},
                   std::vector<std::string> purposes = {"care-coordination"}) {
  v1::Consent c;
  c.set_consent_id(id);
  c.set_subject_id("s-1");
  c.mutable_grantor()->set_kind(v1::GRANTOR_SUBJECT);
  c.set_recording_agency("org.stmarys");
  c.set_status(v1::CONSENT_ACTIVE);
  v1::ConsentRule* root = c.mutable_provision();
  root->set_permit(true);
  root->add_recipients()->set_network(true);
  for (auto& p : purposes) root->add_purposes(p);
  for (auto& cat : categories) root->add_categories(cat);
  return c;
}

bool Allowed(const std::vector<v1::Consent>& cs, const Recipient& r, const std::string& category,
             absl::Time at = T0, const std::string& purpose = "care-coordination") {
  auto d = Decide(cs, r, purpose, {category}, at);
  EXPECT_EQ(d.size(), 1u);
  return d[0].permit;
}

TEST(ConsentDecision, NoConsentDenies) {
  auto d = Decide({}, kFoodBank, "care-coordination", {"social-needs"}, T0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_FALSE(d[0].permit);
  EXPECT_NE(d[0].reason.find("no active consent covers social-needs"), std::string::npos);
}

TEST(ConsentDecision, APermitCoversItsCategoriesPurposesAndRecipients) {
  v1::Consent c = Permit("c1", {"social-needs", "contact"});
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs"));
  EXPECT_TRUE(Allowed({c}, kFoodBank, "contact"));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "clinical"));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs", T0, "research"));
  auto d = Decide({c}, kFoodBank, "care-coordination", {"social-needs", "clinical"}, T0);
  EXPECT_TRUE(d[0].permit);
  EXPECT_EQ(d[0].consent_ids, std::vector<std::string>{"c1"});
  EXPECT_FALSE(d[1].permit);
}

TEST(ConsentDecision, RecipientsByAgencyByKindAndTheNetwork) {
  v1::Consent by_agency = Permit("c1", {"social-needs"});
  by_agency.mutable_provision()->clear_recipients();
  by_agency.mutable_provision()->add_recipients()->set_agency_id("org.foodbank");
  EXPECT_TRUE(Allowed({by_agency}, kFoodBank, "social-needs"));
  EXPECT_FALSE(Allowed({by_agency}, kClinic, "social-needs"));
  v1::Consent by_kind = Permit("c2", {"social-needs"});
  by_kind.mutable_provision()->clear_recipients();
  by_kind.mutable_provision()->add_recipients()->set_agency_kind(v1::HOSPITAL);
  EXPECT_TRUE(Allowed({by_kind}, kClinic, "social-needs"));
  EXPECT_FALSE(Allowed({by_kind}, kFoodBank, "social-needs"));
  v1::Consent network = Permit("c3", {"social-needs"});
  EXPECT_TRUE(Allowed({network}, kFoodBank, "social-needs"));
  EXPECT_TRUE(Allowed({network}, kClinic, "social-needs"));
}

TEST(ConsentDecision, WithinOneConsentTheMostSpecificRuleWins) {
  // Permit the network; deny one agency; but within that, permit contact data.
  v1::Consent c = Permit("c1", {"social-needs", "contact"});
  v1::ConsentRule* deny = c.mutable_provision()->add_exceptions();
  deny->set_permit(false);
  deny->add_recipients()->set_agency_id("org.foodbank");
  v1::ConsentRule* except = deny->add_exceptions();
  except->set_permit(true);
  except->add_categories("contact");
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs"));
  EXPECT_TRUE(Allowed({c}, kFoodBank, "contact"));
  EXPECT_TRUE(Allowed({c}, kClinic, "social-needs"));
}

TEST(ConsentDecision, ANestedDenyOfAPeriod) {
  v1::Consent c = Permit("c1", {"social-needs"});
  v1::ConsentRule* deny = c.mutable_provision()->add_exceptions();
  deny->set_permit(false);
  deny->mutable_period()->set_start_unix_nanos(N(T0));
  deny->mutable_period()->set_end_unix_nanos(N(T0 + absl::Hours(24)));
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs", T0 - absl::Nanoseconds(1)));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs", T0));
  EXPECT_FALSE(
      Allowed({c}, kFoodBank, "social-needs", T0 + absl::Hours(24) - absl::Nanoseconds(1)));
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs", T0 + absl::Hours(24)));
}

TEST(ConsentDecision, AcrossConsentsDenyWins) {
  v1::Consent permit = Permit("c1", {"social-needs"});
  v1::Consent deny = Permit("c2", {"social-needs"});
  deny.mutable_provision()->set_permit(false);
  auto d = Decide({permit, deny}, kFoodBank, "care-coordination", {"social-needs"}, T0);
  EXPECT_FALSE(d[0].permit);
  EXPECT_EQ(d[0].consent_ids, std::vector<std::string>{"c2"});
  EXPECT_NE(d[0].reason.find("denied by consent c2"), std::string::npos);
}

TEST(ConsentDecision, StartAndExpiryAtTheExactInstant) {
  v1::Consent c = Permit("c1", {"social-needs"});
  c.mutable_period()->set_start_unix_nanos(N(T0));
  c.mutable_period()->set_end_unix_nanos(N(T0 + absl::Hours(1)));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs", T0 - absl::Nanoseconds(1)))
      << "not yet valid";
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs", T0)) << "valid from its start";
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs", T0 + absl::Hours(1) - absl::Nanoseconds(1)));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs", T0 + absl::Hours(1)))
      << "expired at its end";
}

TEST(ConsentDecision, RevokedExpiredAndEnteredInErrorNeverPermit) {
  v1::Consent c = Permit("c1", {"social-needs"});
  c.set_revoked_unix_nanos(N(T0));
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs", T0 - absl::Nanoseconds(1)));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "social-needs", T0));
  for (v1::ConsentStatus s :
       {v1::CONSENT_REVOKED, v1::CONSENT_EXPIRED, v1::CONSENT_ENTERED_IN_ERROR}) {
    v1::Consent other = Permit("c2", {"social-needs"});
    other.set_status(s);
    EXPECT_FALSE(Allowed({other}, kFoodBank, "social-needs")) << s;
    // ... and neither do they deny: an active permit still decides.
    v1::Consent deny = other;
    deny.mutable_provision()->set_permit(false);
    EXPECT_TRUE(Allowed({Permit("c3", {"social-needs"}), deny}, kFoodBank, "social-needs")) << s;
  }
}

TEST(ConsentDecision, EachSensitiveCategoryNeedsAConsentThatNamesIt) {
  for (const std::string& sensitive : SensitiveCategories()) {
    v1::Consent everything = Permit("c-all");  // no categories: all of them
    EXPECT_TRUE(Allowed({everything}, kClinic, "clinical"));
    EXPECT_FALSE(Allowed({everything}, kClinic, sensitive)) << sensitive;
    auto d = Decide({everything}, kClinic, "care-coordination", {sensitive}, T0);
    EXPECT_NE(d[0].reason.find("does not name the sensitive category " + sensitive),
              std::string::npos);
    v1::Consent named = Permit("c-named", {sensitive});
    EXPECT_TRUE(Allowed({named}, kClinic, sensitive)) << sensitive;
    // Named in a nested rule under an "everything" permit also counts.
    v1::Consent nested = Permit("c-nested");
    v1::ConsentRule* r = nested.mutable_provision()->add_exceptions();
    r->set_permit(true);
    r->add_categories(sensitive);
    r->add_recipients()->set_agency_id("org.clinic");
    EXPECT_TRUE(Allowed({nested}, kClinic, sensitive)) << sensitive;
    EXPECT_FALSE(Allowed({nested}, kFoodBank, sensitive)) << sensitive;
  }
}

TEST(ConsentDecision, Part2RecordsFollowTheSameRulesWithTheirElements) {
  v1::Consent c = Permit("c-part2", {"sud-part2"}, {"treatment"});
  v1::Part2Elements* p2 = c.mutable_part2();
  p2->set_who_may_disclose("org.stmarys");
  p2->set_information_description("SUD treatment summary");
  p2->set_recipients_description("org.clinic");
  p2->set_purpose_description("treatment");
  p2->set_right_to_revoke_acknowledged(true);
  p2->set_expiration("one year");
  p2->set_signed_(true);
  c.mutable_provision()->clear_recipients();
  c.mutable_provision()->add_recipients()->set_agency_id("org.clinic");
  EXPECT_TRUE(Allowed({c}, kClinic, "sud-part2", T0, "treatment"));
  EXPECT_FALSE(Allowed({c}, kClinic, "sud-part2", T0, "care-coordination"));
  EXPECT_FALSE(Allowed({c}, kFoodBank, "sud-part2", T0, "treatment"));
}

TEST(ConsentDecision, AGuardiansConsentPermitsLikeTheSubjects) {
  v1::Consent c = Permit("c-guardian", {"social-needs"});
  c.mutable_grantor()->set_kind(v1::GRANTOR_PARENT_GUARDIAN);
  c.mutable_grantor()->set_relationship("mother");
  EXPECT_TRUE(Allowed({c}, kFoodBank, "social-needs"));
}

}  // namespace
}  // namespace careloop::consent
