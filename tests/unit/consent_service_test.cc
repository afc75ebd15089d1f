// The consent core on a real ledger: subjects (resolve, link, merge, refused
// ambiguity), grants, amendments and revocations as signed envelopes, who may
// read what, revocation notices to holders, decisions with the stream
// versions they read (and the race with a revocation), break-glass and its
// review, and the disclosure report against an independent computation.
#include <gtest/gtest.h>

#include <latch>
#include <random>
#include <thread>

#include "absl/strings/str_replace.h"
#include "careloop/v1/audit.pb.h"
#include "services/consent/consent_core.h"
#include "services/consent/report.h"
#include "tests/support/consent_env.h"

namespace careloop::consent {
namespace {

using careloop::testing::ConsentEnv;
using careloop::testing::Who;

class ConsentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(env_.Start().ok()); }

  v1::ResolveSubjectRequest Ids(std::vector<std::pair<std::string, std::string>> ids) {
    v1::ResolveSubjectRequest r;
    for (auto& [authority, value] : ids) {
      v1::Identifier* id = r.add_identifiers();
      id->set_authority(authority);
      id->set_value(value);
    }
    return r;
  }

  void ExpectRefusedWritingNothing(const absl::Status& s, absl::StatusCode code,
                                   const std::string& fragment, uint64_t size_before) {
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(std::string(s.message()).find(fragment), std::string::npos) << s;
    EXPECT_EQ(env_.ledger()->size(), size_before) << "a refused request wrote something";
  }

  // Events of one type, in ledger order.
  std::vector<v1::Event> EventsOfType(const std::string& type) {
    std::vector<v1::Event> out;
    uint64_t from = 1;
    while (true) {
      v1::ReadRequest r;
      r.set_from_seq(from);
      r.set_include_payloads(true);
      auto page = env_.ledger()->Read(r);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok() || page->events().empty()) break;
      for (const auto& e : page->events()) {
        if (e.header().type() == type) out.push_back(e);
      }
      from = page->events().rbegin()->header().seq() + 1;
    }
    return out;
  }

  // Compliance merges `merged` into `survivor`.
  absl::Status MergeAsCompliance(const std::string& survivor, const std::string& merged,
                                 const std::string& reason) {
    v1::MergeSubjects merge;
    merge.set_surviving_subject_id(survivor);
    merge.set_merged_subject_id(merged);
    merge.set_reason(reason);
    return core()->Submit(env_.Sign(merge, "org.compliance", "compliance")).status();
  }

  // Whether the food bank may receive `subject`'s social needs now.
  bool PermitsSocialNeeds(const std::string& subject) {
    auto d = env_.Check(subject, "org.foodbank", {"social-needs"});
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() && d->decisions(0).permit();
  }

  ConsentEnv env_;
  ConsentCore* core() { return env_.consent(); }
};

TEST_F(ConsentServiceTest, AnIdentifierResolvesToOneSubjectCreatedOnFirstUse) {
  auto first = core()->Resolve(Ids({{"org.stmarys/mrn", "000123"}}), Who("org.stmarys"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->subject_id(), "s-1");
  auto again = core()->Resolve(Ids({{"org.stmarys/mrn", "000123"}}), Who("org.stmarys"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->subject_id(), "s-1");
  // The identifier's value appears in no stream name.
  auto created = EventsOfType("IdentifierClaimed");
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].header().stream().find("000123"), std::string::npos);
  // Bad input and unknown callers write nothing.
  uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Resolve(Ids({}), Who("org.stmarys")).status(),
                              absl::StatusCode::kInvalidArgument, "1 to 8", size);
  ExpectRefusedWritingNothing(
      core()->Resolve(Ids({{"bad authority", "1"}}), Who("org.stmarys")).status(),
      absl::StatusCode::kInvalidArgument, "authority", size);
  ExpectRefusedWritingNothing(
      core()->Resolve(Ids({{"a", std::string("x\ny")}}), Who("org.stmarys")).status(),
      absl::StatusCode::kInvalidArgument, "control characters", size);
  ExpectRefusedWritingNothing(
      core()
          ->Resolve(Ids({{"org.stmarys/a", "1"}, {"org.stmarys/a", "1"}}), Who("org.stmarys"))
          .status(),
      absl::StatusCode::kInvalidArgument, "twice", size);
  ExpectRefusedWritingNothing(core()->Resolve(Ids({{"a", "1"}}), Who("org.unknown")).status(),
                              absl::StatusCode::kPermissionDenied, "is for agency", size);
  ExpectRefusedWritingNothing(core()->Resolve(Ids({{"a", "1"}}), Who("")).status(),
                              absl::StatusCode::kUnauthenticated, "identity", size);
}

// A lookup (a search by a person's identifier) finds, and never creates:
// an unknown identifier is NOT_FOUND and writes nothing; a foreign one is
// refused as before.
TEST_F(ConsentServiceTest, ALookupFindsAndNeverCreates) {
  ASSERT_EQ(*env_.NewSubject("000123"), "s-1");
  v1::ResolveSubjectRequest known = Ids({{"org.stmarys/mrn", "000123"}});
  known.set_lookup_only(true);
  auto found = core()->Resolve(known, Who("org.stmarys"));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->subject_id(), "s-1");
  const uint64_t size = env_.ledger()->size();
  v1::ResolveSubjectRequest unknown = Ids({{"org.stmarys/mrn", "999999"}});
  unknown.set_lookup_only(true);
  ExpectRefusedWritingNothing(core()->Resolve(unknown, Who("org.stmarys")).status(),
                              absl::StatusCode::kNotFound, "no person", size);
  known.mutable_identifiers(0)->set_authority("org.stmarys/mrn");
  ExpectRefusedWritingNothing(core()->Resolve(known, Who("org.foodbank")).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
  // Negative control: without lookup_only the unknown identifier creates.
  unknown.set_lookup_only(false);
  EXPECT_TRUE(core()->Resolve(unknown, Who("org.stmarys")).ok());
  EXPECT_GT(env_.ledger()->size(), size);
}

// The abuse of issue 16: a third agency resolved another hospital's MRN, and
// a known and an unknown one were answered differently.
TEST_F(ConsentServiceTest, AForeignIdentifierIsRefusedAlikeKnownOrUnknown) {
  ASSERT_EQ(*env_.NewSubject("000123"), "s-1");
  uint64_t size = env_.ledger()->size();
  absl::Status known =
      core()->Resolve(Ids({{"org.stmarys/mrn", "000123"}}), Who("org.clinic")).status();
  absl::Status unknown =
      core()->Resolve(Ids({{"org.stmarys/mrn", "999999"}}), Who("org.clinic")).status();
  ExpectRefusedWritingNothing(known, absl::StatusCode::kPermissionDenied,
                              "does not hold the identifier authority org.stmarys/mrn", size);
  EXPECT_EQ(known, unknown);
  EXPECT_EQ(std::string(known.message()).find("s-1"), std::string::npos);
  // A shared authority the directory lets both hospitals use.
  ASSERT_TRUE(core()->Resolve(Ids({{"us-or-medicaid", "XK1"}}), Who("org.clinic")).ok());
  ExpectRefusedWritingNothing(
      core()->Resolve(Ids({{"us-or-medicaid", "XK2"}}), Who("org.foodbank")).status(),
      absl::StatusCode::kPermissionDenied, "does not hold", env_.ledger()->size());
}

TEST_F(ConsentServiceTest, LinkMergeAndAmbiguousMatchesAreRefusedNotGuessed) {
  ASSERT_EQ(*env_.NewSubject("000123"), "s-1");
  ASSERT_EQ(*env_.NewSubject("C-9", "org.clinic"), "s-2");
  uint64_t size = env_.ledger()->size();
  // A known identifier with an unknown one: not linked silently.
  ExpectRefusedWritingNothing(
      core()
          ->Resolve(Ids({{"org.stmarys/mrn", "000123"}, {"us-or-medicaid", "XK1"}}),
                    Who("org.stmarys"))
          .status(),
      absl::StatusCode::kFailedPrecondition, "not linked to subject s-1", size);

  // A signed link makes the Medicaid id the same person.
  v1::LinkIdentifier link;
  link.set_subject_id("s-1");
  link.mutable_identifier()->set_authority("us-or-medicaid");
  link.mutable_identifier()->set_value("XK1");
  ASSERT_TRUE(core()->Submit(env_.Sign(link, "org.stmarys", "sender")).ok());
  auto both = core()->Resolve(Ids({{"org.stmarys/mrn", "000123"}, {"us-or-medicaid", "XK1"}}),
                              Who("org.stmarys"));
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->subject_id(), "s-1");
  // The clinic links another Medicaid id to its own patient.
  link.set_subject_id("s-2");
  link.mutable_identifier()->set_value("XK9");
  ASSERT_TRUE(core()->Submit(env_.Sign(link, "org.clinic", "sender")).ok());
  // Identifiers of two subjects: ambiguous.
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core()
          ->Resolve(Ids({{"org.stmarys/mrn", "000123"}, {"us-or-medicaid", "XK9"}}),
                    Who("org.stmarys"))
          .status(),
      absl::StatusCode::kFailedPrecondition, "ambiguous", size);
  // Linking an identifier of another subject is refused: merge instead.
  link.set_subject_id("s-1");
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(link, "org.stmarys", "sender")).status(),
                              absl::StatusCode::kFailedPrecondition, "merge the subjects", size);
  // Receivers may not merge; nor may an agency with no relationship to both
  // subjects (a shared authority is not one); compliance may.
  v1::MergeSubjects merge;
  merge.set_surviving_subject_id("s-1");
  merge.set_merged_subject_id("s-2");
  merge.set_reason("same person: registration duplicate");
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(merge, "org.foodbank", "receiver")).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(merge, "org.stmarys", "admin")).status(),
                              absl::StatusCode::kPermissionDenied, "no relationship to subject s-2",
                              size);
  ASSERT_TRUE(core()->Submit(env_.Sign(merge, "org.compliance", "compliance")).ok());
  auto merged = core()->Resolve(Ids({{"org.clinic/mrn", "C-9"}}), Who("org.clinic"));
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->subject_id(), "s-1");
  auto all = core()->Resolve(
      Ids({{"org.stmarys/mrn", "000123"}, {"us-or-medicaid", "XK9"}, {"us-or-medicaid", "XK1"}}),
      Who("org.stmarys"));
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->subject_id(), "s-1");
  auto set = core()->Subjects("s-2");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->survivor, "s-1");
  EXPECT_EQ(set->members, (std::vector<std::string>{"s-1", "s-2"}));
  // Merging again, or into a merged id, or into itself, is refused.
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(merge, "org.compliance", "compliance")).status(),
      absl::StatusCode::kFailedPrecondition, "already merged", size);
  merge.set_surviving_subject_id("s-2");
  merge.set_merged_subject_id("s-1");
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(merge, "org.compliance", "compliance")).status(),
      absl::StatusCode::kFailedPrecondition, "merge into that one", size);
  merge.set_surviving_subject_id("s-1");
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(merge, "org.compliance", "compliance")).status(),
      absl::StatusCode::kInvalidArgument, "itself", size);
  // An agency with its own identifiers on both subjects may merge them.
  ASSERT_EQ(*env_.NewSubject("000999"), "s-3");
  merge.set_merged_subject_id("s-3");
  ASSERT_TRUE(core()->Submit(env_.Sign(merge, "org.stmarys", "admin")).ok());
  EXPECT_EQ(core()->Subjects("s-3")->survivor, "s-1");
  // The hub admin does not touch people's records.
  ASSERT_EQ(*env_.NewSubject("000777"), "s-4");
  merge.set_merged_subject_id("s-4");
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Submit(env_.SignAsHub(merge)).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
}

// The abuse of issue 16: a third agency linked an identifier onto another
// hospital's patient, recorded a consent for them, and merged them into a
// subject of its own.
TEST_F(ConsentServiceTest, AnUnrelatedAgencyCannotLinkConsentOrMergeAnothersPatient) {
  const std::string patient = *env_.NewSubject("000123");         // St Mary's
  const std::string own = *env_.NewSubject("Z-1", "org.clinic");  // the clinic's
  const uint64_t size = env_.ledger()->size();
  v1::LinkIdentifier link;
  link.set_subject_id(patient);
  link.mutable_identifier()->set_authority("org.clinic/mrn");
  link.mutable_identifier()->set_value("Z-2");
  absl::Status linked = core()->Submit(env_.Sign(link, "org.clinic", "sender")).status();
  ExpectRefusedWritingNothing(linked, absl::StatusCode::kPermissionDenied, "no relationship", size);
  // The same answer for a subject that does not exist.
  link.set_subject_id("s-404");
  absl::Status missing = core()->Submit(env_.Sign(link, "org.clinic", "sender")).status();
  EXPECT_EQ(missing.code(), linked.code());
  EXPECT_EQ(std::string(missing.message()),
            absl::StrReplaceAll(std::string(linked.message()), {{patient, "s-404"}}));
  // A network-wide consent including behavioural health, on made-up evidence.
  v1::GrantConsent g;
  *g.mutable_consent() = ConsentEnv::NetworkConsent(patient, {"behavioral-health"});
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(g, "org.clinic", "sender")).status(),
                              absl::StatusCode::kPermissionDenied, "no relationship", size);
  v1::MergeSubjects merge;
  merge.set_surviving_subject_id(own);
  merge.set_merged_subject_id(patient);
  merge.set_reason("x");
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(merge, "org.clinic", "admin")).status(),
                              absl::StatusCode::kPermissionDenied, "no relationship", size);
  // Compliance records a consent on documented evidence.
  EXPECT_TRUE(core()->Submit(env_.Sign(g, "org.compliance", "compliance")).ok());
}

TEST_F(ConsentServiceTest, GrantsAreValidatedAndRefusedOnesWriteNothing) {
  std::string s = *env_.NewSubject("000123");
  auto grant = [&](const v1::Consent& c, const std::string& role = "sender") {
    v1::GrantConsent g;
    *g.mutable_consent() = c;
    return core()->Submit(env_.Sign(g, "org.stmarys", role)).status();
  };
  uint64_t size = env_.ledger()->size();
  v1::Consent c = ConsentEnv::NetworkConsent(s);
  c.mutable_grantor()->set_kind(v1::GRANTOR_PARENT_GUARDIAN);
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "relationship", size);
  c = ConsentEnv::NetworkConsent(s);
  c.clear_evidence();
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "evidence", size);
  c = ConsentEnv::NetworkConsent(s, {"sud-part2"});
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "§2.31", size);
  c = ConsentEnv::NetworkConsent(s, {"astrology"});
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "unknown data category",
                              size);
  c = ConsentEnv::NetworkConsent(s, {}, {"marketing"});
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "unknown purpose",
                              size);
  c = ConsentEnv::NetworkConsent(s);
  c.mutable_provision()->add_recipients()->set_agency_id("org.nowhere");
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kNotFound, "not registered", size);
  c = ConsentEnv::NetworkConsent(s);
  c.mutable_provision()->set_permit(false);
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "root rule", size);
  c = ConsentEnv::NetworkConsent(s);
  c.mutable_provision()->add_exceptions()->set_permit(true);
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "reverse", size);
  c = ConsentEnv::NetworkConsent("s-404");
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kPermissionDenied, "no relationship",
                              size);
  c = ConsentEnv::NetworkConsent(s);
  c.set_recording_agency("org.clinic");
  ExpectRefusedWritingNothing(grant(c), absl::StatusCode::kInvalidArgument, "recording agency",
                              size);
  ExpectRefusedWritingNothing(grant(ConsentEnv::NetworkConsent(s), "compliance"),
                              absl::StatusCode::kPermissionDenied, "", size);
  // A guardian with the relationship, and a complete Part 2 consent, pass.
  c = ConsentEnv::NetworkConsent(s);
  c.mutable_grantor()->set_kind(v1::GRANTOR_PARENT_GUARDIAN);
  c.mutable_grantor()->set_relationship("mother");
  EXPECT_TRUE(grant(c).ok());
  c = ConsentEnv::NetworkConsent(s, {"sud-part2"});
  v1::Part2Elements* p2 = c.mutable_part2();
  p2->set_who_may_disclose("St Mary's SUD program");
  p2->set_information_description("SUD treatment summary");
  p2->set_recipients_description("community agencies on the network");
  p2->set_purpose_description("care coordination after discharge");
  p2->set_right_to_revoke_acknowledged(true);
  p2->set_expiration("one year from signature");
  p2->set_signed_(true);
  p2->set_signed_unix_nanos(absl::ToUnixNanos(env_.clock().Now()));
  EXPECT_TRUE(grant(c).ok());
  // A retry of the same envelope returns the same consent id and writes nothing.
  v1::GrantConsent g;
  *g.mutable_consent() = ConsentEnv::NetworkConsent(s);
  std::string bytes = env_.Sign(g, "org.stmarys", "sender");
  auto first = core()->Submit(bytes);
  ASSERT_TRUE(first.ok());
  size = env_.ledger()->size();
  auto retry = core()->Submit(bytes);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->assigned_id(), first->assigned_id());
  EXPECT_EQ(retry->receipt().header_bytes(), first->receipt().header_bytes());
  EXPECT_EQ(env_.ledger()->size(), size);
  // A tampered envelope fails its signature and writes nothing.
  std::string tampered = env_.Sign(g, "org.stmarys", "sender");
  tampered[tampered.size() - 3] ^= 1;
  ExpectRefusedWritingNothing(core()->Submit(tampered).status(), absl::StatusCode::kUnauthenticated,
                              "signature", size);
  // A directory payload is not a consent change.
  v1::SetAgencyStatus wrong;
  wrong.set_agency_id("org.stmarys");
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(wrong, "org.stmarys", "admin")).status(),
                              absl::StatusCode::kInvalidArgument, "", size);
}

TEST_F(ConsentServiceTest, DecisionsFollowTheRulesThroughTheService) {
  std::string s = *env_.NewSubject("000123");
  // No consent: deny.
  auto d = env_.Check(s, "org.foodbank", {"social-needs"});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->decisions(0).permit());
  EXPECT_NE(d->decisions(0).reason().find("no active consent"), std::string::npos);
  // A network consent with a nested deny for the shelter and for clinical data.
  v1::Consent c = ConsentEnv::NetworkConsent(s);
  v1::ConsentRule* deny_shelter = c.mutable_provision()->add_exceptions();
  deny_shelter->add_recipients()->set_agency_id("org.shelter");
  v1::ConsentRule* deny_clinical = c.mutable_provision()->add_exceptions();
  deny_clinical->add_categories("clinical");
  c.mutable_period()->set_end_unix_nanos(absl::ToUnixNanos(env_.clock().Now() + absl::Hours(24)));
  std::string id = *env_.Grant(c);
  d = env_.Check(s, "org.foodbank", {"social-needs", "clinical", "behavioral-health"});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->decisions(0).permit());
  EXPECT_EQ(d->decisions(0).consent_ids(0), id);
  EXPECT_FALSE(d->decisions(1).permit()) << "nested deny of a category";
  EXPECT_FALSE(d->decisions(2).permit()) << "a sensitive category needs naming";
  EXPECT_FALSE(env_.Check(s, "org.shelter", {"social-needs"})->decisions(0).permit())
      << "nested deny of an agency";
  EXPECT_FALSE(env_.Check(s, "org.foodbank", {"social-needs"}, "research")->decisions(0).permit());
  // The decision reports what it read.
  std::map<std::string, uint64_t> read;
  for (const auto& v : d->read_versions()) read[v.stream()] = v.version();
  EXPECT_EQ(read.at("consent/" + s), 1u);
  EXPECT_EQ(read.at("subject/" + s), 1u);
  EXPECT_EQ(read.at("agency/org.foodbank"), 1u);
  // At the period's end instant the consent no longer permits.
  v1::CheckConsentRequest at;
  at.set_subject_id(s);
  at.set_recipient_agency("org.foodbank");
  at.set_purpose("care-coordination");
  at.add_categories("social-needs");
  at.set_at_unix_nanos(c.period().end_unix_nanos() - 1);
  EXPECT_TRUE(core()->Decide(at)->decisions(0).permit());
  at.set_at_unix_nanos(c.period().end_unix_nanos());
  EXPECT_FALSE(core()->Decide(at)->decisions(0).permit());
  // By kind: hospitals only.
  std::string s2 = *env_.NewSubject("000124");
  v1::Consent k = ConsentEnv::NetworkConsent(s2);
  k.mutable_provision()->clear_recipients();
  k.mutable_provision()->add_recipients()->set_agency_kind(v1::HOSPITAL);
  ASSERT_TRUE(env_.Grant(k).ok());
  EXPECT_TRUE(env_.Check(s2, "org.clinic", {"clinical"})->decisions(0).permit());
  EXPECT_FALSE(env_.Check(s2, "org.foodbank", {"clinical"})->decisions(0).permit());
  // Bad input.
  EXPECT_EQ(env_.Check(s, "org.nowhere", {"social-needs"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(env_.Check(s, "org.foodbank", {"astrology"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(env_.Check(s, "org.foodbank", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(env_.Check("s-404", "org.foodbank", {"clinical"}).status().code(),
            absl::StatusCode::kNotFound);
}

// Decisions and subject sets are cached while the streams they read stay
// unchanged; each of these changes must be seen by the very next call.
TEST_F(ConsentServiceTest, RepeatedDecisionsSeeEveryGrantMergeAndRevocation) {
  const std::string s1 = *env_.NewSubject("000501");
  const std::string s2 = *env_.NewSubject("C-77", "org.clinic");
  auto permits = [&](const std::string& subject) { return PermitsSocialNeeds(subject); };
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(permits(s1));
    EXPECT_FALSE(permits(s2));
    EXPECT_EQ(core()->Subjects(s2)->survivor, s2);
  }
  const std::string id = *env_.Grant(ConsentEnv::NetworkConsent(s2), "org.clinic");
  EXPECT_TRUE(permits(s2)) << "a new consent";
  EXPECT_FALSE(permits(s1));
  ASSERT_TRUE(MergeAsCompliance(s1, s2, "same person").ok());
  EXPECT_EQ(core()->Subjects(s2)->survivor, s1) << "the merged id follows the merge";
  EXPECT_TRUE(permits(s1)) << "the survivor has the merged id's consent";
  EXPECT_TRUE(permits(s2));
  v1::RevokeConsent revoke;
  revoke.set_consent_id(id);
  revoke.set_reason("withdrawn");
  ASSERT_TRUE(core()->Submit(env_.Sign(revoke, "org.clinic", "sender")).ok());
  EXPECT_FALSE(permits(s1)) << "a revocation";
  EXPECT_FALSE(permits(s2));
}

TEST_F(ConsentServiceTest, AmendAndRevokeByTheRecorderAndHoldersAreTold) {
  std::string s = *env_.NewSubject("000123");
  std::string id = *env_.Grant(ConsentEnv::NetworkConsent(s));
  ASSERT_TRUE(env_.Disclose(s, "org.foodbank", {"social-needs"}).ok());
  ASSERT_TRUE(env_.Disclose(s, "org.shelter", {"contact"}).ok());
  // Another agency may neither amend nor revoke it.
  v1::AmendConsent amend;
  amend.set_consent_id(id);
  *amend.mutable_consent() = ConsentEnv::NetworkConsent(s, {"social-needs"});
  uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(amend, "org.clinic", "sender")).status(),
                              absl::StatusCode::kPermissionDenied, "recording agency", size);
  // The recorder narrows it to social needs.
  ASSERT_TRUE(core()->Submit(env_.Sign(amend, "org.stmarys", "sender")).ok());
  EXPECT_FALSE(env_.Check(s, "org.shelter", {"contact"})->decisions(0).permit());
  EXPECT_TRUE(env_.Check(s, "org.foodbank", {"social-needs"})->decisions(0).permit());
  // The recorder revokes: each holder gets one event that concerns it.
  v1::RevokeConsent revoke;
  revoke.set_consent_id(id);
  revoke.set_reason("the patient withdrew consent by phone");
  size = env_.ledger()->size();
  const absl::Status foreign =
      core()->Submit(env_.Sign(revoke, "org.foodbank", "receiver")).status();
  ExpectRefusedWritingNothing(foreign, absl::StatusCode::kPermissionDenied,
                              "only the recording agency or compliance", size);
  // The refusal names nobody else's records, and a missing consent gets the same one.
  EXPECT_EQ(std::string(foreign.message()).find("org.stmarys"), std::string::npos)
      << foreign.message();
  v1::RevokeConsent bogus = revoke;
  bogus.set_consent_id("c-00000000000000000000");
  const absl::Status missing =
      core()->Submit(env_.Sign(bogus, "org.foodbank", "receiver")).status();
  EXPECT_EQ(missing.code(), foreign.code());
  EXPECT_EQ(std::string(missing.message()),
            absl::StrReplaceAll(std::string(foreign.message()), {{id, bogus.consent_id()}}));
  ASSERT_TRUE(core()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
  auto notices = EventsOfType("ConsentRevocationNotice");
  ASSERT_EQ(notices.size(), 2u);
  std::set<std::string> told;
  for (const auto& n : notices) {
    ASSERT_EQ(n.header().agencies_size(), 1);
    told.insert(n.header().agencies(0));
  }
  EXPECT_EQ(told, (std::set<std::string>{"org.foodbank", "org.shelter"}));
  EXPECT_FALSE(env_.Check(s, "org.foodbank", {"social-needs"})->decisions(0).permit());
  auto record = core()->GetConsent(id, Who("org.stmarys"));
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->consent().status(), v1::CONSENT_REVOKED);
  EXPECT_EQ(record->consent().revoked_unix_nanos(), absl::ToUnixNanos(env_.clock().Now()));
  EXPECT_EQ(record->consent().revocation_reason(), "the patient withdrew consent by phone");
  EXPECT_EQ(record->revoked_by_agency(), "org.stmarys");
  EXPECT_EQ(record->revoked_by_user(), "u-org.stmarys");
  // A revoked consent is not amended or revoked again.
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).status(),
                              absl::StatusCode::kFailedPrecondition, "no longer active", size);
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(amend, "org.stmarys", "sender")).status(),
                              absl::StatusCode::kFailedPrecondition, "no longer active", size);
  // Compliance may revoke another agency's consent.
  std::string id2 = *env_.Grant(ConsentEnv::NetworkConsent(s));
  revoke.set_consent_id(id2);
  EXPECT_TRUE(core()->Submit(env_.Sign(revoke, "org.compliance", "compliance")).ok());
  // Entered in error: it never applied, not even to earlier instants.
  std::string id3 = *env_.Grant(ConsentEnv::NetworkConsent(s));
  v1::CheckConsentRequest before;
  before.set_subject_id(s);
  before.set_recipient_agency("org.clinic");
  before.set_purpose("care-coordination");
  before.add_categories("clinical");
  before.set_at_unix_nanos(absl::ToUnixNanos(env_.clock().Now()));
  env_.clock().Advance(absl::Minutes(1));
  EXPECT_TRUE(core()->Decide(before)->decisions(0).permit());
  revoke.set_consent_id(id3);
  revoke.set_entered_in_error(true);
  ASSERT_TRUE(core()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
  EXPECT_FALSE(core()->Decide(before)->decisions(0).permit());
}

TEST_F(ConsentServiceTest, OnlyTheRecorderHoldersAndComplianceReadAConsent) {
  std::string s = *env_.NewSubject("000123");
  std::string id = *env_.Grant(ConsentEnv::NetworkConsent(s));
  ASSERT_TRUE(env_.Disclose(s, "org.foodbank", {"social-needs"}).ok());
  for (const char* reader : {"org.stmarys", "org.foodbank", "org.compliance"}) {
    auto r = core()->GetConsent(id, Who(reader));
    EXPECT_TRUE(r.ok()) << reader << ": " << r.status();
    auto l = core()->ListConsents(
        [&] {
          v1::ListConsentsRequest q;
          q.set_subject_id(s);
          return q;
        }(),
        Who(reader));
    ASSERT_TRUE(l.ok()) << reader << ": " << l.status();
    EXPECT_EQ(l->consents_size(), 1) << reader;
  }
  // The hub's own services decide through Decider, not by reading consents,
  // and a hub admin reads no one's records.
  for (const char* reader : {"hub", "admin:ops"}) {
    EXPECT_EQ(core()->GetConsent(id, Who(reader)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << reader;
  }
  EXPECT_EQ(core()->GetConsent(id, Who("org.stmarys"))->holders(0), "org.foodbank");
  v1::ListConsentsRequest list;
  list.set_subject_id(s);
  v1::CheckConsentRequest check;
  check.set_subject_id(s);
  check.set_recipient_agency("org.shelter");
  check.set_purpose("care-coordination");
  check.add_categories("contact");
  v1::DisclosureReportRequest report;
  report.set_subject_id(s);
  EXPECT_EQ(core()->GetConsent(id, Who("")).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(core()->Report(report, Who("")).status().code(), absl::StatusCode::kUnauthenticated);
  for (const char* other : {"org.shelter", "org.clinic", "org.er", "hub", "admin:ops"}) {
    EXPECT_EQ(core()->GetConsent(id, Who(other)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << other;
    EXPECT_EQ(core()->ListConsents(list, Who(other)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << other;
    EXPECT_EQ(core()->Check(check, Who(other)).status().code(), absl::StatusCode::kPermissionDenied)
        << other;
    EXPECT_EQ(core()->Report(report, Who(other)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << other;
    EXPECT_EQ(core()->ListBreakGlass({}, Who(other)).status().code(),
              absl::StatusCode::kPermissionDenied)
        << other;
  }
  // An unknown subject looks the same as an invisible one to a non-compliance caller.
  list.set_subject_id("s-404");
  EXPECT_EQ(core()->ListConsents(list, Who("org.shelter")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(core()->ListConsents(list, Who("org.compliance")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ConsentServiceTest, ADisclosureAgainstARevokedConsentFailsOnItsPreconditions) {
  std::string s = *env_.NewSubject("000123");
  std::string id = *env_.Grant(ConsentEnv::NetworkConsent(s));
  auto decision = env_.Check(s, "org.foodbank", {"social-needs"});
  ASSERT_TRUE(decision.ok());
  ASSERT_TRUE(decision->decisions(0).permit());
  v1::RevokeConsent revoke;
  revoke.set_consent_id(id);
  revoke.set_reason("withdrawn");
  ASSERT_TRUE(core()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
  v1::DisclosureRecorded d;
  d.add_categories("social-needs");
  auto req = DisclosureAppend(*decision, d);
  ASSERT_TRUE(req.ok());
  uint64_t size = env_.ledger()->size();
  auto commit = env_.ledger()->Append(*req);
  EXPECT_EQ(commit.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(env_.ledger()->size(), size);
  // Deciding again denies.
  EXPECT_FALSE(env_.Check(s, "org.foodbank", {"social-needs"})->decisions(0).permit());
  // A disclosure of a denied category cannot even be built.
  decision = env_.Check(s, "org.foodbank", {"social-needs"});
  EXPECT_EQ(DisclosureAppend(*decision, d).status().code(), absl::StatusCode::kPermissionDenied);
}

// Issue 4: 10,000 revocations racing appends that carry the decision's read
// versions as preconditions; no disclosure may land after a revocation of a
// consent it relied on.
TEST(ConsentRace, NoDisclosureIsOrderedAfterARevocationItReliedOn) {
  // Ordering is the point here, not durability: skip the fsync.
  ConsentEnv env(ConsentEnv::Options{.unsafe_no_sync = true});
  ASSERT_TRUE(env.Start().ok());
  int iterations = 10000;
  if (const char* n = std::getenv("CARELOOP_RACE_ITERATIONS")) iterations = std::atoi(n);
  // About ten consents per subject over the run, as in life.
  const int subject_count = std::max(1, iterations / 10);
  std::vector<std::string> subjects;
  for (int i = 0; i < subject_count; ++i) subjects.push_back(*env.NewSubject(absl::StrCat("m", i)));
  // The revocation does more work before it reaches the ledger than the bare
  // append does, so the append waits a seeded random spin of up to twice the
  // revocation's recent latency: both orders happen often.
  std::mt19937 rng(20261128);
  absl::Duration revoke_latency = absl::Microseconds(200);
  int landed = 0, refused = 0;
  for (int i = 0; i < iterations; ++i) {
    const std::string& s = subjects[i % subject_count];
    auto id = env.Grant(ConsentEnv::NetworkConsent(s, {"social-needs"}));
    ASSERT_TRUE(id.ok()) << id.status();
    auto decision = env.Check(s, "org.foodbank", {"social-needs"});
    ASSERT_TRUE(decision.ok());
    ASSERT_TRUE(decision->decisions(0).permit());
    v1::DisclosureRecorded d;
    d.add_categories("social-needs");
    auto req = DisclosureAppend(*decision, d);
    ASSERT_TRUE(req.ok());
    v1::RevokeConsent revoke;
    revoke.set_consent_id(*id);
    revoke.set_reason("withdrawn");
    std::string revoke_bytes = env.Sign(revoke, "org.stmarys", "sender");
    std::latch go(2);
    absl::Status revoked;
    absl::StatusOr<v1::Commit> disclosed;
    const absl::Duration spin = revoke_latency * 2 * std::uniform_real_distribution<>(0, 1)(rng);
    absl::Duration took;
    std::thread a([&] {
      go.arrive_and_wait();
      const absl::Time t0 = absl::Now();
      revoked = env.consent()->Submit(revoke_bytes).status();
      took = absl::Now() - t0;
    });
    std::thread b([&] {
      go.arrive_and_wait();
      for (const absl::Time until = absl::Now() + spin; absl::Now() < until;) {
      }
      disclosed = env.ledger()->Append(*req);
    });
    a.join();
    b.join();
    revoke_latency = (revoke_latency * 7 + took) / 8;
    // The revocation always lands (retried if the disclosure moved the
    // streams it read); the disclosure lands only if it came first.
    for (int retry = 0; absl::IsAborted(revoked) && retry < 3; ++retry)
      revoked = env.consent()->Submit(revoke_bytes).status();
    ASSERT_TRUE(revoked.ok()) << revoked;
    if (disclosed.ok()) {
      ++landed;
    } else {
      ASSERT_EQ(disclosed.status().code(), absl::StatusCode::kFailedPrecondition)
          << disclosed.status();
      ++refused;
    }
  }
  // Every disclosure precedes the revocation of each consent it relied on.
  auto audit = careloop::testing::AuditDisclosures(env.ledger());
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(audit->disclosures, landed);
  EXPECT_EQ(audit->revocations, iterations);
  const int after = audit->after_covering_revocation;
  const int notices = audit->notices;
  EXPECT_EQ(after, 0) << "disclosures ordered after a covering revocation";
  // Each disclosure that landed first made its recipient a holder, told of
  // the revocation that followed.
  EXPECT_EQ(notices, landed);
  std::cout << "race: " << landed << " disclosures landed first, " << refused
            << " refused after the revocation\n";
  if (iterations >= 1000) {
    // Both orders were exercised (with the spin each is about half).
    EXPECT_GT(landed, iterations / 20);
    EXPECT_GT(refused, iterations / 20);
  }
}

TEST_F(ConsentServiceTest, BreakGlassOverridesADenyForAnHourAndComplianceReviewsIt) {
  std::string s = *env_.NewSubject("000123");
  EXPECT_FALSE(
      env_.Check(s, "org.er", {"behavioral-health"}, "emergency-treatment")->decisions(0).permit());
  v1::BreakGlass bg;
  bg.set_subject_id(s);
  bg.add_categories("behavioral-health");
  bg.set_purpose("emergency-treatment");
  bg.set_reason("unconscious patient, overdose suspected");
  // Only an emergency agency's emergency actor.
  uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(bg, "org.stmarys", "sender")).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
  bg.clear_reason();
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(bg, "org.er", "emergency")).status(),
                              absl::StatusCode::kInvalidArgument, "reason", size);
  bg.set_reason("unconscious patient, overdose suspected");
  bg.set_duration_seconds(7 * 24 * 3600);
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(bg, "org.er", "emergency")).status(),
                              absl::StatusCode::kInvalidArgument, "at most", size);
  bg.clear_duration_seconds();
  auto used = core()->Submit(env_.Sign(bg, "org.er", "emergency"));
  ASSERT_TRUE(used.ok()) << used.status();
  const std::string bg_id = used->assigned_id();
  // Every compliance agency is concerned.
  auto invoked = EventsOfType("BreakGlassInvoked");
  ASSERT_EQ(invoked.size(), 1u);
  EXPECT_TRUE(std::count(invoked[0].header().agencies().begin(),
                         invoked[0].header().agencies().end(), "org.compliance"));
  auto d = env_.Check(s, "org.er", {"behavioral-health", "hiv-sti"}, "emergency-treatment");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->decisions(0).permit());
  EXPECT_EQ(d->decisions(0).break_glass_id(), bg_id);
  EXPECT_FALSE(d->decisions(1).permit()) << "only the categories named";
  EXPECT_FALSE(env_.Check(s, "org.clinic", {"behavioral-health"}, "emergency-treatment")
                   ->decisions(0)
                   .permit())
      << "only for the agency that broke the glass";
  EXPECT_FALSE(
      env_.Check(s, "org.er", {"behavioral-health"}, "care-coordination")->decisions(0).permit())
      << "only for the purpose stated";
  ASSERT_TRUE(env_.Disclose(s, "org.er", {"behavioral-health"}, "emergency-treatment").ok());
  env_.clock().Advance(absl::Hours(1) - absl::Nanoseconds(1));
  EXPECT_TRUE(
      env_.Check(s, "org.er", {"behavioral-health"}, "emergency-treatment")->decisions(0).permit());
  env_.clock().Advance(absl::Nanoseconds(1));
  EXPECT_FALSE(
      env_.Check(s, "org.er", {"behavioral-health"}, "emergency-treatment")->decisions(0).permit())
      << "an hour later the glass is whole again";
  // The review list.
  auto open = core()->ListBreakGlass({}, Who("org.compliance"));
  ASSERT_TRUE(open.ok()) << open.status();
  ASSERT_EQ(open->records_size(), 1);
  EXPECT_EQ(open->records(0).break_glass_id(), bg_id);
  EXPECT_EQ(open->records(0).agency_id(), "org.er");
  EXPECT_EQ(open->records(0).until_unix_nanos() - open->records(0).from_unix_nanos(),
            absl::ToInt64Nanoseconds(absl::Hours(1)));
  v1::ReviewBreakGlass review;
  review.set_break_glass_id(bg_id);
  review.set_appropriate(true);
  review.set_notes("ED record confirms overdose presentation");
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(review, "org.er", "emergency")).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
  ASSERT_TRUE(core()->Submit(env_.Sign(review, "org.compliance", "compliance")).ok());
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(review, "org.compliance", "compliance")).status(),
      absl::StatusCode::kFailedPrecondition, "already reviewed", size);
  EXPECT_EQ(core()->ListBreakGlass({}, Who("org.compliance"))->records_size(), 0);
  v1::ListBreakGlassRequest all;
  all.set_include_reviewed(true);
  auto closed = core()->ListBreakGlass(all, Who("org.compliance"));
  ASSERT_EQ(closed->records_size(), 1);
  EXPECT_TRUE(closed->records(0).reviewed());
  EXPECT_EQ(closed->records(0).reviewed_by_agency(), "org.compliance");
  // The report names the break-glass as the authority.
  v1::DisclosureReportRequest report;
  report.set_subject_id(s);
  auto rep = core()->Report(report, Who("org.compliance"));
  ASSERT_EQ(rep->entries_size(), 1);
  EXPECT_EQ(rep->entries(0).authority(), "break-glass " + bg_id);
}

// The disclosure report against an independent computation, for a generated
// history: several subjects (two merged), recipients, purposes, consents
// (some HIPAA authorizations), at advancing times.
TEST_F(ConsentServiceTest, TheReportEqualsAnIndependentlyComputedList) {
  struct Made {
    uint64_t seq;
    int64_t at;
    std::string subject, recipient, purpose;
    std::vector<std::string> categories;
    bool authorization;
  };
  std::mt19937 rng(20261128);
  std::vector<std::string> subjects = {*env_.NewSubject("a"), *env_.NewSubject("b"),
                                       *env_.NewSubject("c")};
  const std::vector<std::string> purposes = {"care-coordination", "research", "public-health",
                                             "payment"};
  std::map<std::string, bool> authorization;  // subject -> its consent is an authorization
  for (size_t i = 0; i < subjects.size(); ++i) {
    v1::Consent c = ConsentEnv::NetworkConsent(subjects[i], {}, purposes);
    c.set_hipaa_authorization(i == 1);
    authorization[subjects[i]] = i == 1;
    ASSERT_TRUE(env_.Grant(c).ok());
  }
  const std::vector<std::string> recipients = {"org.foodbank", "org.shelter", "org.clinic"};
  const std::vector<std::string> categories = {"contact", "social-needs", "clinical"};
  std::vector<Made> made;
  const absl::Time start = env_.clock().Now();
  for (int i = 0; i < 300; ++i) {
    env_.clock().Advance(absl::Hours(1 + rng() % 500));
    Made m;
    m.subject = subjects[rng() % subjects.size()];
    m.recipient = recipients[rng() % recipients.size()];
    m.purpose = purposes[rng() % purposes.size()];
    m.categories = {categories[rng() % categories.size()]};
    m.authorization = authorization[m.subject];
    m.at = absl::ToUnixNanos(env_.clock().Now());
    auto commit = env_.Disclose(m.subject, m.recipient, m.categories, m.purpose);
    ASSERT_TRUE(commit.ok()) << commit.status();
    m.seq = commit->first_seq();
    made.push_back(m);
  }
  // a and b were one person.
  v1::MergeSubjects merge;
  merge.set_surviving_subject_id(subjects[0]);
  merge.set_merged_subject_id(subjects[1]);
  merge.set_reason("duplicate registration");
  ASSERT_TRUE(core()->Submit(env_.Sign(merge, "org.stmarys", "admin")).ok());
  const absl::Time end = env_.clock().Now();
  const absl::Time from = start + (end - start) / 3;
  const absl::Time to = start + (end - start) * 5 / 6;

  for (bool hipaa : {false, true}) {
    for (bool summarize : {false, true}) {
      v1::DisclosureReportRequest req;
      req.set_subject_id(subjects[1]);  // the merged id finds the survivor's report
      req.set_from_unix_nanos(absl::ToUnixNanos(from));
      req.set_to_unix_nanos(absl::ToUnixNanos(to));
      req.set_hipaa_accounting(hipaa);
      req.set_summarize(summarize);
      auto report = core()->Report(req, Who("org.compliance"));
      ASSERT_TRUE(report.ok()) << report.status();
      EXPECT_EQ(report->subject_id(), subjects[0]);
      // Independently: filter, then summarise by (recipient, purpose).
      std::vector<std::tuple<uint64_t, std::string, std::string, uint32_t, int64_t>> expected;
      std::map<std::pair<std::string, std::string>, size_t> index;
      for (const Made& m : made) {
        if (m.subject == subjects[2]) continue;
        if (m.at < absl::ToUnixNanos(from) || m.at > absl::ToUnixNanos(to)) continue;
        if (hipaa &&
            (m.purpose == "care-coordination" || m.purpose == "payment" || m.authorization)) {
          continue;
        }
        auto key = std::make_pair(m.recipient, m.purpose);
        if (summarize && index.contains(key)) {
          auto& e = expected[index[key]];
          std::get<3>(e) += 1;
          std::get<4>(e) = m.at;
          continue;
        }
        index[key] = expected.size();
        expected.emplace_back(m.seq, m.recipient, m.purpose, 1, m.at);
      }
      ASSERT_EQ(report->entries_size(), static_cast<int>(expected.size()))
          << "hipaa=" << hipaa << " summarize=" << summarize;
      for (size_t i = 0; i < expected.size(); ++i) {
        const auto& e = report->entries(static_cast<int>(i));
        EXPECT_EQ(e.seq(), std::get<0>(expected[i]));
        EXPECT_EQ(e.recipient_agency(), std::get<1>(expected[i]));
        EXPECT_EQ(e.purpose(), std::get<2>(expected[i]));
        EXPECT_EQ(e.count(), std::get<3>(expected[i]));
        EXPECT_EQ(e.last_unix_nanos(), std::get<4>(expected[i]));
        EXPECT_EQ(e.recipient_name(), "Agency " + e.recipient_agency());
      }
      if (hipaa) {
        EXPECT_GT(expected.size(), 0u) << "the generated history tests the filter";
      }
    }
  }
  // The forms for people carry the same rows.
  v1::DisclosureReportRequest req;
  req.set_subject_id(subjects[0]);
  auto report = core()->Accounting(req);
  ASSERT_TRUE(report.ok());
  std::string csv = ReportCsv(*report);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), report->entries_size() + 1);
  std::string text = ReportText(*report);
  EXPECT_NE(text.find("also recorded as " + subjects[1]), std::string::npos);
  EXPECT_NE(text.find("Agency org.foodbank (org.foodbank)"), std::string::npos);
}

}  // namespace
}  // namespace careloop::consent

namespace careloop::consent {
namespace {
using careloop::testing::Who;

// A wrong merge put one person's consent on another; compliance undoes it,
// both histories stay, and decisions use each subject's own consents again.
TEST_F(ConsentServiceTest, AWrongMergeIsUndoneAndDecisionsUseTheRightConsentsAgain) {
  const std::string s1 = *env_.NewSubject("000501");
  const std::string s2 = *env_.NewSubject("C-77", "org.clinic");
  auto permits = [&](const std::string& subject) { return PermitsSocialNeeds(subject); };
  ASSERT_TRUE(env_.Grant(ConsentEnv::NetworkConsent(s2), "org.clinic").ok());
  EXPECT_FALSE(permits(s1)) << "before: s1 has no consent";
  EXPECT_TRUE(permits(s2));
  ASSERT_TRUE(MergeAsCompliance(s1, s2, "looked like one person").ok());
  EXPECT_TRUE(permits(s1)) << "after the wrong merge: s2's consent covers s1";
  EXPECT_EQ(core()->Resolve(Ids({{"org.clinic/mrn", "C-77"}}), Who("org.clinic"))->subject_id(),
            s1);

  v1::UnmergeSubjects unmerge;
  unmerge.set_surviving_subject_id(s1);
  unmerge.set_merged_subject_id(s2);
  uint64_t size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(unmerge, "org.compliance", "compliance")).status(),
      absl::StatusCode::kInvalidArgument, "reason", size);
  unmerge.set_reason("two people: different birth dates on the forms");
  // Only compliance undoes a merge (the policy table; the actor's role).
  ExpectRefusedWritingNothing(core()->Submit(env_.Sign(unmerge, "org.stmarys", "admin")).status(),
                              absl::StatusCode::kPermissionDenied, "", size);
  ASSERT_TRUE(core()->Submit(env_.Sign(unmerge, "org.compliance", "compliance")).ok());
  EXPECT_FALSE(permits(s1)) << "after the unmerge: s1 is on its own again";
  EXPECT_TRUE(permits(s2));
  EXPECT_EQ(core()->Subjects(s2)->survivor, s2);
  EXPECT_EQ(core()->Subjects(s1)->members, (std::vector<std::string>{s1}));
  EXPECT_EQ(core()->Resolve(Ids({{"org.clinic/mrn", "C-77"}}), Who("org.clinic"))->subject_id(),
            s2);
  // The history is kept: the merge, then its undoing, in both streams.
  EXPECT_EQ(EventsOfType("MergeSubjects").size(), 1u);
  EXPECT_EQ(EventsOfType("UnmergeSubjects").size(), 1u);
  EXPECT_EQ(EventsOfType("SubjectUnmerged").size(), 1u);
  // Undoing it twice is refused.
  size = env_.ledger()->size();
  ExpectRefusedWritingNothing(
      core()->Submit(env_.Sign(unmerge, "org.compliance", "compliance", "m-again")).status(),
      absl::StatusCode::kFailedPrecondition, "nothing to undo", size);
  // And the two may be merged again, correctly this time or not.
  ASSERT_TRUE(MergeAsCompliance(s1, s2, "second look").ok());
  EXPECT_TRUE(permits(s1));
}

}  // namespace
}  // namespace careloop::consent

namespace careloop::consent {
namespace {
using careloop::testing::Who;

// Reads of a person's records by agencies and compliance are ledger events
// (AuditQueried in audit/<caller>), whichever service answers them; the
// hub's own decisions are not; a refused read records nothing (it is a log
// line, authz.refused or the core's refusal).
TEST_F(ConsentServiceTest, ReadsOfAPersonsRecordsAreRecordedAndTheHubsOwnDecisionsAreNot) {
  const std::string s = *env_.NewSubject("000123");
  const std::string id = *env_.Grant(ConsentEnv::NetworkConsent(s));
  // A read about one person is a RecordAccessed naming that person in its
  // header (and the reading agency), nothing else.
  auto reads = [&]() {
    std::vector<v1::RecordAccessed> out;
    for (const v1::Event& e : EventsOfType("RecordAccessed")) {
      v1::RecordAccessed q;
      EXPECT_TRUE(q.ParseFromString(e.payload()));
      EXPECT_EQ(e.header().stream(), "audit/" + q.agency());
      EXPECT_EQ(e.header().subject(), s);
      EXPECT_EQ(
          std::vector<std::string>(e.header().agencies().begin(), e.header().agencies().end()),
          std::vector<std::string>{q.agency()});
      out.push_back(q);
    }
    return out;
  };
  ASSERT_TRUE(reads().empty());
  ASSERT_TRUE(core()->GetConsent(id, policy::Caller::Agency("org.stmarys", "u-planner")).ok());
  v1::ListConsentsRequest list;
  list.set_subject_id(s);
  ASSERT_TRUE(core()->ListConsents(list, Who("org.compliance")).ok());
  v1::DisclosureReportRequest report;
  report.set_subject_id(s);
  ASSERT_TRUE(core()->Report(report, Who("org.compliance")).ok());
  std::vector<v1::RecordAccessed> got = reads();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].agency(), "org.stmarys");
  EXPECT_EQ(got[0].actor(), "u-planner");
  EXPECT_EQ(got[0].rpc(), "ConsentService.GetConsent");
  EXPECT_EQ(got[0].record_type(), "consent");
  EXPECT_EQ(got[1].rpc(), "ConsentService.ListConsents");
  EXPECT_EQ(got[2].rpc(), "ConsentService.DisclosureReport");
  EXPECT_EQ(got[2].record_type(), "disclosure-report");
  // The hub's own decision on a submission, and a refused read: nothing.
  ASSERT_TRUE(env_.Check(s, "org.foodbank", {"social-needs"}).ok());
  EXPECT_EQ(core()->GetConsent(id, Who("org.shelter")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reads().size(), 3u);
}

}  // namespace
}  // namespace careloop::consent
