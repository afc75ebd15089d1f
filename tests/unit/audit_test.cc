// The audit core on a real ledger with the real directory, consent and
// referral cores: who may call what; trail queries by every selector with
// paging, each query recorded; a subject's consent trail; export bundles
// that verify offline, and fail at the right line when one event is altered,
// dropped, reordered or inserted (every position of a small log); forged
// heads; the monitor's verdicts on growth, forks, rollbacks, rewrites and
// another log; FHIR AuditEvent checked field by field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "services/audit/audit_core.h"
#include "services/audit/bundle.h"
#include "services/trust/head_signer.h"
#include "storage/receipt.h"
#include "tests/support/referral_fixture.h"

namespace careloop::audit {
namespace {

using careloop::testing::ReferralFixture;
using careloop::testing::Who;
using nlohmann::json;

class AuditTest : public ReferralFixture {
 protected:
  void SetUp() override {
    ReferralFixture::SetUp();
    audit_ = std::make_unique<AuditCore>(env_.ledger(), env_.directory_state(), env_.consent(),
                                         &env_.clock());
    // Some history: a referral (two disclosures), a status change, a thread
    // message, then a revocation (a notice to the food bank).
    ASSERT_TRUE(core_->Submit(Referral("r-1")).ok());
    env_.clock().Advance(absl::Minutes(1));
    ASSERT_TRUE(
        core_->UpdateStatus(Update("r-1", v1::TASK_ACCEPTED, "org.foodbank", "receiver")).ok());
    env_.clock().Advance(absl::Minutes(1));
    v1::RevokeConsent revoke;
    revoke.set_consent_id(consent_id_);
    revoke.set_reason("withdrawn");
    ASSERT_TRUE(env_.consent()->Submit(env_.Sign(revoke, "org.stmarys", "sender")).ok());
    // The hub's verifier key, as a monitor or an officer holds it.
    verifier_ = careloop::testing::VerifierFor(*careloop::testing::TestSigner());
  }

  v1::ExportResponse ExportSubject() {
    v1::ExportRequest req;
    req.set_subject_id(subject_);
    req.set_include_payloads(true);
    auto b = audit_->Export(req, Who("org.compliance"));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.value_or(v1::ExportResponse());
  }

  std::unique_ptr<AuditCore> audit_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
};

TEST_F(AuditTest, OnlyComplianceQueriesWhileAnyAgencyMayMonitor) {
  const std::string agency = "org.foodbank";
  v1::AuditQueryRequest q;
  q.set_subject_id(subject_);
  EXPECT_EQ(audit_->Query(q, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied);
  v1::TrailRequest t;
  t.set_subject_id(subject_);
  EXPECT_EQ(audit_->Trail(t, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied);
  v1::DisclosureReportRequest r;
  r.set_subject_id(subject_);
  EXPECT_EQ(audit_->Report(r, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied);
  v1::ExportRequest x;
  x.set_subject_id(subject_);
  EXPECT_EQ(audit_->Export(x, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied);
  v1::FhirAuditEventsRequest f;
  f.set_subject_id(subject_);
  EXPECT_EQ(audit_->FhirAuditEvents(f, Who(agency)).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Heads and consistency proofs: any authenticated agency; nobody anonymous.
  auto head = audit_->Head(v1::AuditHeadRequest(), Who(agency));
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(audit_->Head(v1::AuditHeadRequest(), Who("")).status().code(),
            absl::StatusCode::kUnauthenticated);
  v1::AuditConsistencyRequest c;
  c.set_size1(5);
  ASSERT_TRUE(audit_->Consistency(c, Who(agency)).ok());
  // Inclusion: the caller's own events only (and compliance: any).
  uint64_t own = 0, other = 0;
  v1::ReadRequest read;
  read.set_from_seq(1);
  read.set_limit(1000);
  auto log = env_.ledger()->Read(read);
  ASSERT_TRUE(log.ok());
  for (const auto& e : log->events()) {
    bool mine = false;
    for (const auto& a : e.header().agencies()) mine |= a == agency;
    (mine ? own : other) = e.header().seq();
  }
  v1::AuditInclusionRequest i;
  i.set_seq(own);
  auto receipt = audit_->Inclusion(i, Who(agency));
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_TRUE(storage::VerifyReceipt(*receipt, *verifier_, std::nullopt).ok());
  i.set_seq(other);
  EXPECT_EQ(audit_->Inclusion(i, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(audit_->Inclusion(i, Who("org.compliance")).ok());
  i.set_seq(head->tree_size() + 100);
  EXPECT_EQ(audit_->Inclusion(i, Who(agency)).status().code(), absl::StatusCode::kPermissionDenied)
      << "no oracle for seqs that do not exist";
}

TEST_F(AuditTest, QueriesSelectPageAndAreRecorded) {
  auto all = [&](v1::AuditQueryRequest q) {
    std::vector<uint64_t> seqs;
    for (int pages = 0; pages < 100; ++pages) {
      auto r = audit_->Query(q, Who("org.compliance"));
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const auto& e : r->events()) seqs.push_back(e.header().seq());
      if (r->next_after_seq() == 0) break;
      q.set_after_seq(r->next_after_seq());
    }
    return seqs;
  };
  v1::AuditQueryRequest q;
  q.set_subject_id(subject_);
  q.set_event_type("DisclosureRecorded");
  EXPECT_EQ(all(q).size(), 2u);
  q.set_limit(1);
  auto paged = all(q);
  EXPECT_EQ(paged.size(), 2u) << "paging neither loses nor repeats";
  EXPECT_LT(paged[0], paged[1]);
  // By referral: its stream and thread, in order.
  v1::AuditQueryRequest byref;
  byref.set_referral("org.stmarys/r-1");
  auto ref = all(byref);
  ASSERT_GE(ref.size(), 3u);
  EXPECT_TRUE(std::is_sorted(ref.begin(), ref.end()));
  // By consent: its grant, revocation, the notice and the disclosures under it.
  v1::AuditQueryRequest byconsent;
  byconsent.set_consent_id(consent_id_);
  EXPECT_EQ(all(byconsent).size(), 5u);
  // By actor: the food bank's intake user signed the acceptance.
  v1::AuditQueryRequest byactor;
  byactor.set_agency("org.foodbank");
  byactor.set_actor("u-org.foodbank");
  EXPECT_EQ(all(byactor).size(), 1u);
  // By time: only what happened in the second minute.
  v1::AuditQueryRequest bytime;
  bytime.set_from_unix_nanos(absl::ToUnixNanos(env_.clock().Now() - absl::Minutes(1)));
  bytime.set_to_unix_nanos(absl::ToUnixNanos(env_.clock().Now()));
  bytime.set_event_type("StatusChanged");
  EXPECT_EQ(all(bytime).size(), 1u);
  // Refusals.
  v1::AuditQueryRequest none;
  EXPECT_EQ(audit_->Query(none, Who("org.compliance")).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::AuditQueryRequest two;
  two.set_subject_id(subject_);
  two.set_agency("org.foodbank");
  EXPECT_EQ(audit_->Query(two, Who("org.compliance")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Every query left a record of who asked what (about a person: in the
  // person's trail, as a RecordAccessed).
  EXPECT_GE(Count("AuditQueried") + Count("RecordAccessed"), 8);
}

TEST_F(AuditTest, TheConsentTrailTellsTheStoryInOrder) {
  v1::TrailRequest t;
  t.set_subject_id(subject_);
  auto trail = audit_->Trail(t, Who("org.compliance"));
  ASSERT_TRUE(trail.ok()) << trail.status();
  std::vector<std::string> types;
  for (const auto& e : trail->entries()) types.push_back(e.type());
  EXPECT_EQ(types,
            (std::vector<std::string>{"GrantConsent", "DisclosureRecorded", "DisclosureRecorded",
                                      "RevokeConsent", "ConsentRevocationNotice"}));
  EXPECT_EQ(trail->entries(0).consent_id(), consent_id_);
  EXPECT_EQ(trail->entries(1).recipient_agency(), "org.foodbank");
  EXPECT_EQ(trail->entries(3).reason(), "withdrawn");
  EXPECT_EQ(trail->entries(4).recipient_agency(), "org.foodbank");
}

TEST_F(AuditTest, ABundleVerifiesOfflineAndNamesTheFirstBadLine) {
  v1::ExportResponse bundle = ExportSubject();
  // Through its file form, as an officer would carry it.
  auto parsed = ParseBundle(BundleToJsonLines(bundle));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  BundleReport ok = VerifyBundle(*parsed, *verifier_);
  ASSERT_TRUE(ok.ok) << ok.problem << " at line " << ok.bad_line;
  EXPECT_GE(ok.events, 6u);
  EXPECT_GE(ok.envelopes, 3u) << "grant, revocation, the referral manifest";
  // Positions of event lines (line numbers are 1-based; line 1 is the head).
  std::vector<int> events;
  for (int i = 0; i < bundle.lines_size(); ++i)
    if (bundle.lines(i).line_case() == v1::BundleLine::kEvent) events.push_back(i);
  ASSERT_GE(events.size(), 6u);
  for (int i : events) {
    const size_t line = static_cast<size_t>(i) + 1;
    // Altered header.
    v1::ExportResponse b = bundle;
    std::string* h = b.mutable_lines(i)->mutable_event()->mutable_header_bytes();
    (*h)[h->size() / 2] ^= 1;
    BundleReport r = VerifyBundle(b, *verifier_);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.bad_line, line) << "altered header: " << r.problem;
    // Altered payload.
    b = bundle;
    std::string* p = b.mutable_lines(i)->mutable_event()->mutable_payload();
    if (!p->empty()) {
      (*p)[p->size() / 2] ^= 1;
      r = VerifyBundle(b, *verifier_);
      EXPECT_FALSE(r.ok);
      EXPECT_EQ(r.bad_line, line) << "altered payload: " << r.problem;
    }
    // Dropped.
    b = bundle;
    b.mutable_lines()->erase(b.mutable_lines()->begin() + i);
    r = VerifyBundle(b, *verifier_);
    EXPECT_FALSE(r.ok);
    const bool last_event = i == events.back();
    // Named at this line: it now holds the next event, or (when the last
    // event was dropped) the export record, which lists the missing seq.
    EXPECT_EQ(r.bad_line, line) << "dropped: " << r.problem;
    // Reordered with the next event.
    if (!last_event) {
      b = bundle;
      b.mutable_lines()->SwapElements(i, i + 1);
      r = VerifyBundle(b, *verifier_);
      EXPECT_FALSE(r.ok);
      EXPECT_EQ(r.bad_line, line) << "reordered: " << r.problem;
    }
    // Inserted: a copy of this event right after it.
    b = bundle;
    v1::BundleLine copy = bundle.lines(i);
    b.mutable_lines()->Add(std::move(copy));
    for (int k = b.lines_size() - 1; k > i + 1; --k) b.mutable_lines()->SwapElements(k, k - 1);
    r = VerifyBundle(b, *verifier_);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.bad_line, line + 1) << "inserted: " << r.problem;
  }
  // A head signed by another key.
  auto other =
      careloop::testing::VerifierFor(*careloop::testing::TestSigner("careloop.test", 0x33));
  BundleReport forged = VerifyBundle(bundle, *other);
  EXPECT_FALSE(forged.ok);
  EXPECT_EQ(forged.bad_line, 1u);
  // A withheld payload still verifies by its digest.
  v1::ExportRequest digests_only;
  digests_only.set_subject_id(subject_);
  auto slim = audit_->Export(digests_only, Who("org.compliance"));
  ASSERT_TRUE(slim.ok());
  BundleReport slim_ok = VerifyBundle(*slim, *verifier_);
  EXPECT_TRUE(slim_ok.ok) << slim_ok.problem;
  EXPECT_EQ(slim_ok.envelopes, 0u);
}

TEST_F(AuditTest, TheMonitorCatchesForksRollbacksRewritesAndAnotherLog) {
  auto head_at = [&](uint64_t size) {
    v1::AuditHeadRequest r;
    r.set_tree_size(size);
    return *audit_->Head(r, Who("org.foodbank"));
  };
  auto proof = [&](uint64_t a, uint64_t b) {
    v1::AuditConsistencyRequest c;
    c.set_size1(a);
    c.set_size2(b);
    return audit_->Consistency(c, Who("org.foodbank"))->proof();
  };
  const v1::SignedHead now = head_at(0);
  MonitorResult first = CheckHead(std::nullopt, head_at(10), v1::ConsistencyProof(), *verifier_);
  ASSERT_TRUE(first.ok) << first.problem;
  auto state = MonitorStateFromText(MonitorStateToText(first.next));
  ASSERT_TRUE(state.ok());
  MonitorResult grown = CheckHead(*state, now, proof(10, now.tree_size()), *verifier_);
  EXPECT_TRUE(grown.ok) << grown.problem;
  // Rolled back: smaller than before.
  MonitorResult back = CheckHead(grown.next, head_at(10), v1::ConsistencyProof(), *verifier_);
  EXPECT_FALSE(back.ok);
  EXPECT_NE(back.problem.find("ROLLED BACK"), std::string::npos);
  // Forked: the same size, another root.
  MonitorState fork = grown.next;
  fork.root[0] ^= 1;
  MonitorResult forked = CheckHead(fork, now, v1::ConsistencyProof(), *verifier_);
  EXPECT_FALSE(forked.ok);
  EXPECT_NE(forked.problem.find("FORKED"), std::string::npos);
  // Rewritten: the last head's root is not a prefix of the new tree.
  MonitorState rewritten = *state;
  rewritten.root[5] ^= 1;
  MonitorResult rw = CheckHead(rewritten, now, proof(10, now.tree_size()), *verifier_);
  EXPECT_FALSE(rw.ok);
  EXPECT_NE(rw.problem.find("NOT CONSISTENT"), std::string::npos);
  // Another log id.
  MonitorState elsewhere = *state;
  elsewhere.log_id = "0000";
  MonitorResult moved = CheckHead(elsewhere, now, proof(10, now.tree_size()), *verifier_);
  EXPECT_FALSE(moved.ok);
  EXPECT_NE(moved.problem.find("LOG ID CHANGED"), std::string::npos);
  // Forged: signed by another key.
  auto other =
      careloop::testing::VerifierFor(*careloop::testing::TestSigner("careloop.test", 0x33));
  MonitorResult forged = CheckHead(*state, now, proof(10, now.tree_size()), *other);
  EXPECT_FALSE(forged.ok);
  EXPECT_NE(forged.problem.find("FORGED"), std::string::npos);
}

TEST_F(AuditTest, FhirAuditEventCarriesEveryElementForADisclosure) {
  v1::FhirAuditEventsRequest req;
  req.set_subject_id(subject_);
  auto r = audit_->FhirAuditEvents(req, Who("org.compliance"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->audit_events_json_size(), 2);
  json e = json::parse(r->audit_events_json(0));
  EXPECT_EQ(e["resourceType"], "AuditEvent");
  EXPECT_EQ(e["type"]["system"], "http://dicom.nema.org/resources/ontology/DCM");
  EXPECT_EQ(e["type"]["code"], "110106");
  EXPECT_EQ(e["subtype"][0]["code"], "disclosure");
  EXPECT_EQ(e["action"], "R");
  EXPECT_TRUE(e["recorded"].get<std::string>().ends_with("Z"));
  EXPECT_EQ(e["outcome"], "0");
  EXPECT_EQ(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
  EXPECT_EQ(e["purposeOfEvent"][0]["text"], "care-coordination");
  ASSERT_EQ(e["agent"].size(), 3u);
  EXPECT_EQ(e["agent"][0]["who"]["identifier"]["value"], "org.stmarys");
  EXPECT_EQ(e["agent"][0]["requestor"], false);
  EXPECT_EQ(e["agent"][1]["who"]["identifier"]["value"], "org.foodbank");
  EXPECT_EQ(e["agent"][1]["requestor"], true);
  // The human who sent it: the staff member who signed the referral.
  EXPECT_EQ(e["agent"][2]["type"]["coding"][0]["code"], "humanuser");
  EXPECT_EQ(e["agent"][2]["who"]["identifier"]["system"], "urn:careloop:user:org.stmarys");
  EXPECT_FALSE(e["agent"][2]["who"]["identifier"]["value"].get<std::string>().empty());
  EXPECT_EQ(e["source"]["type"][0]["code"], "4");
  ASSERT_EQ(e["entity"].size(), 2u);
  EXPECT_EQ(e["entity"][0]["what"]["identifier"]["value"], subject_);
  EXPECT_EQ(e["entity"][0]["role"]["code"], "1");
  EXPECT_EQ(e["entity"][1]["what"]["identifier"]["value"], "org.stmarys/r-1");
  EXPECT_EQ(e["entity"][1]["securityLabel"][0]["code"], "contact");
  bool consent_detail = false;
  for (const auto& d : e["entity"][1]["detail"])
    consent_detail |= d["type"] == "consent" && d["valueString"] == consent_id_;
  EXPECT_TRUE(consent_detail);
}

// Who opened what, by subject, by actor and by referral, against the reads
// the scenario itself made; an agency sees only its own staff's reads; the
// reads are in the person's trail but never in the accounting of
// disclosures (reads inside an agency are not disclosures).
TEST_F(AuditTest, TheAccessTrailNamesEveryReaderAndOnlyToThoseAllowed) {
  // A new consent, so the food bank sees contact and social needs again.
  auto fresh = env_.Grant(
      careloop::testing::ConsentEnv::NetworkConsent(subject_, {"contact", "social-needs"}));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  v1::DisclosureReportRequest accounting;
  accounting.set_subject_id(subject_);
  accounting.set_hipaa_accounting(true);
  auto before = audit_->Report(accounting, policy::Caller::Agency("org.compliance", "u-officer"));
  ASSERT_TRUE(before.ok()) << before.status();

  struct Read {
    std::string agency, actor;
    std::vector<std::string> sections;
    std::vector<std::string> consents;  // per section, joined
  };
  std::vector<Read> expected;
  auto open = [&](const std::string& agency, const std::string& actor) {
    v1::GetReferralRequest get;
    get.set_referral("org.stmarys/r-1");
    auto v = core_->Get(get, policy::Caller::Agency(agency, actor));
    ASSERT_TRUE(v.ok()) << v.status();
    Read r{agency, actor, {}, {}};
    for (const auto& s : v->sections()) {
      r.sections.push_back(s.section_id());
      r.consents.push_back(agency == "org.stmarys" ? "" : *fresh);
    }
    expected.push_back(r);
  };
  open("org.stmarys", "u-planner");
  open("org.foodbank", "u-intake");
  open("org.foodbank", "u-other");
  ASSERT_EQ(expected[0].sections, (std::vector<std::string>{"contact", "needs", "bh"}));
  ASSERT_EQ(expected[1].sections, (std::vector<std::string>{"contact", "needs"}))
      << "the behavioural-health section was withheld at routing";

  auto entries_of = [&](const v1::AccessResponse& r) {
    std::vector<Read> out;
    for (const auto& e : r.entries()) {
      if (e.record_type() != "referral") continue;
      Read got{e.agency(), e.actor(), {}, {}};
      for (const auto& s : e.sections()) {
        got.sections.push_back(s.section_id());
        got.consents.push_back(absl::StrJoin(s.consent_ids(), ","));
        EXPECT_EQ(s.authority(), e.agency() == "org.stmarys" ? "sender" : "consent");
      }
      out.push_back(got);
    }
    return out;
  };
  auto same = [](const std::vector<Read>& a, const std::vector<Read>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].agency != b[i].agency || a[i].actor != b[i].actor ||
          a[i].sections != b[i].sections || a[i].consents != b[i].consents) {
        return false;
      }
    }
    return true;
  };
  const policy::Caller officer = policy::Caller::Agency("org.compliance", "u-officer");
  v1::AccessRequest by_subject;
  by_subject.set_subject_id(subject_);
  auto all = audit_->Access(by_subject, officer);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(same(entries_of(*all), expected));
  // Compliance's own reads of the person are there too (the report above).
  bool officer_seen = false;
  for (const auto& e : all->entries())
    officer_seen |= e.agency() == "org.compliance" && e.actor() == "u-officer";
  EXPECT_TRUE(officer_seen);

  // "Who opened this": the referral's readers.
  v1::AccessRequest by_referral;
  by_referral.set_referral("org.stmarys/r-1");
  auto opened = audit_->Access(by_referral, officer);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(same(entries_of(*opened), expected));

  // By actor: the intake worker's read; the acceptance its colleague signed
  // is under that colleague.
  v1::AccessRequest by_actor;
  by_actor.set_agency("org.foodbank");
  by_actor.set_actor("u-intake");
  auto intake = audit_->Access(by_actor, officer);
  ASSERT_TRUE(intake.ok()) << intake.status();
  EXPECT_TRUE(same(entries_of(*intake), {expected[1]}));
  by_actor.set_actor("u-org.foodbank");
  auto signer = audit_->Access(by_actor, officer);
  ASSERT_TRUE(signer.ok());
  ASSERT_EQ(signer->entries_size(), 1);
  EXPECT_EQ(signer->entries(0).kind(), "signed");
  EXPECT_EQ(signer->entries(0).what(), "StatusChanged");
  EXPECT_EQ(signer->entries(0).record_id(), "org.stmarys/r-1");

  // An agency sees only its own staff's reads, whichever way it asks.
  auto foodbank = audit_->Access(by_referral, policy::Caller::Agency("org.foodbank", "u-intake"));
  ASSERT_TRUE(foodbank.ok()) << foodbank.status();
  EXPECT_TRUE(same(entries_of(*foodbank), {expected[1], expected[2]}));
  for (const auto& e : foodbank->entries()) EXPECT_EQ(e.agency(), "org.foodbank");
  auto foodbank_subject =
      audit_->Access(by_subject, policy::Caller::Agency("org.foodbank", "u-intake"));
  ASSERT_TRUE(foodbank_subject.ok());
  for (const auto& e : foodbank_subject->entries()) EXPECT_EQ(e.agency(), "org.foodbank");
  v1::AccessRequest other_staff;
  other_staff.set_agency("org.stmarys");
  other_staff.set_actor("u-planner");
  auto refused = audit_->Access(other_staff, policy::Caller::Agency("org.foodbank", "u-intake"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::string(refused.status().message()).find("u-planner"), std::string::npos);
  auto shelter = audit_->Access(by_referral, policy::Caller::Agency("org.shelter", "u-x"));
  ASSERT_TRUE(shelter.ok());
  EXPECT_EQ(shelter->entries_size(), 0) << "no agency sees another's reads";

  // Bad requests.
  EXPECT_EQ(audit_->Access(v1::AccessRequest(), officer).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::AccessRequest two = by_subject;
  two.set_referral("org.stmarys/r-1");
  EXPECT_EQ(audit_->Access(two, officer).status().code(), absl::StatusCode::kInvalidArgument);

  // The trail lists the reads; the accounting of disclosures does not.
  v1::TrailRequest t;
  t.set_subject_id(subject_);
  auto trail = audit_->Trail(t, officer);
  ASSERT_TRUE(trail.ok());
  int reads = 0;
  for (const auto& e : trail->entries()) {
    if (e.type() == "RecordAccessed" && e.record() == "referral org.stmarys/r-1") {
      ++reads;
      EXPECT_FALSE(e.by_user().empty());
    }
  }
  EXPECT_EQ(reads, 3);
  auto after = audit_->Report(accounting, officer);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->entries_size(), before->entries_size());
}

// A disclosure to the person themself is "patient requested", not
// operations (careloop's purpose subject-request; issue 20).
TEST(FhirAuditEventPurpose, ADisclosureToThePersonIsPatientRequested) {
  v1::DisclosureRecorded d;
  d.set_subject_id("s-1");
  d.set_recipient_agency("org.self");
  d.set_disclosing_agency("org.stmarys");
  d.add_categories("contact");
  d.set_purpose("subject-request");
  d.set_authority("law:45 CFR 164.524");
  const json e = json::parse(AuditCore::FhirAuditEvent(d, 7, 1'000'000'000, "careloop.test"));
  EXPECT_EQ(e["purposeOfEvent"][0]["coding"][0]["code"], "PATRQT");
  EXPECT_EQ(e["purposeOfEvent"][0]["text"], "subject-request");
}

}  // namespace
}  // namespace careloop::audit
