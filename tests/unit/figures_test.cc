// The referral figures against an independent count: a seeded scenario of a
// few hundred referrals from two hospitals to two agencies for two services
// (viewed, accepted, declined with reasons, completed, cancelled, left
// unanswered at random times), recorded by the test as it plays them; the
// figures each party gets must equal what the test computes from its own
// record. Also: an agency's figures leave out what it neither sent nor
// received, small cells are withheld, the network's view names no person
// or referral, and only an agency or a hub admin may ask.
#include "services/audit/figures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "services/audit/audit_core.h"
#include "tests/support/referral_fixture.h"

namespace careloop::audit {
namespace {

using careloop::testing::ReferralFixture;

// The scenario as the test played it.
struct Played {
  std::string sender, recipient, service;
  int64_t at = 0, viewed = 0, accepted = 0, declined = 0, closed = 0;
  std::string code;
  bool completed = false;
};

// The expected row, computed here from the record (the definitions of
// services/audit/figures.h, written again).
struct Expected {
  uint64_t offered = 0, viewed = 0, accepted = 0, declined = 0, completed = 0, closed = 0;
  std::vector<int64_t> to_view, to_accept, to_close;
  std::map<std::string, uint64_t> reasons;
};

std::string Shown(uint64_t v) { return v >= 1 && v <= 10 ? "<11" : std::to_string(v); }
std::string Shown(const v1::Count& c) { return c.suppressed() ? "<11" : std::to_string(c.value()); }
std::string Timing(std::vector<int64_t> v) {
  if (v.size() < 11) return "<11";
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::max<size_t>(rank, 1) - 1] / 1'000'000'000;
  };
  return absl::StrCat(at(0.5), "/", at(0.9));
}
std::string Timing(const v1::Timing& t) {
  return t.suppressed() ? "<11" : absl::StrCat(t.p50_seconds(), "/", t.p90_seconds());
}

// One row as text, so a difference shows which figure differs.
std::string Text(const Expected& e) {
  return absl::StrCat("offered ", Shown(e.offered), " viewed ", Shown(e.viewed), " accepted ",
                      Shown(e.accepted), " declined ", Shown(e.declined), " completed ",
                      Shown(e.completed), " closed ", Shown(e.closed), " view ", Timing(e.to_view),
                      " accept ", Timing(e.to_accept), " close ", Timing(e.to_close));
}
std::string Text(const v1::FiguresRow& r) {
  return absl::StrCat("offered ", Shown(r.offered()), " viewed ", Shown(r.viewed()), " accepted ",
                      Shown(r.accepted()), " declined ", Shown(r.declined()), " completed ",
                      Shown(r.completed()), " closed ", Shown(r.closed()), " view ",
                      Timing(r.to_first_view()), " accept ", Timing(r.to_accept()), " close ",
                      Timing(r.to_close()));
}

class FiguresTest : public ReferralFixture {
 protected:
  void SetUp() override {
    ReferralFixture::SetUp();
    audit_ = std::make_unique<AuditCore>(env_.ledger(), env_.directory_state(), env_.consent(),
                                         &env_.clock());
  }

  std::string Send(const std::string& sender, const std::string& id, const std::string& to,
                   const std::string& service) {
    v1::Section s;
    s.set_section_id("needs");
    s.set_category("social-needs");
    s.set_media_type("text/plain");
    s.set_content("screen positive");
    std::vector<v1::Section> sections{s};
    v1::ReferralManifest m;
    m.set_referral_id(id);
    m.mutable_subject()->set_authority(sender + "/mrn");
    m.mutable_subject()->set_value(absl::StrCat("mrn-", id));
    m.set_service_category(service);
    m.set_reason("discharge");
    m.set_priority(v1::ROUTINE);
    m.set_purpose("care-coordination");
    m.mutable_routing()->set_recipient_agency(to);
    auto digests = careloop::testing::SealSections(&sections, careloop::testing::RandomBytes);
    EXPECT_TRUE(digests.ok());
    for (auto& d : *digests) *m.add_sections() = d;
    v1::SubmitReferralRequest req;
    req.set_envelope(env_.Sign(m, sender, "sender"));
    for (auto& sec : sections) *req.add_sections() = sec;
    auto r = core_->Submit(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return absl::StrCat(sender, "/", id);
  }

  void Move(const Played& p, const std::string& id, v1::TaskStatus to, const std::string& by,
            const std::string& role, const std::string& code = "") {
    v1::UpdateReferralStatus u;
    u.set_sender_agency(p.sender);
    u.set_referral_id(id);
    u.set_status(to);
    if (!code.empty()) {
      u.mutable_reason()->set_code(code);
      u.mutable_reason()->set_text("see notes");
    }
    if (to == v1::TASK_COMPLETED) u.mutable_outcome()->set_provided("enrolled");
    auto r = core_->UpdateStatus(env_.Sign(u, by, role));
    ASSERT_TRUE(r.ok()) << r.status() << " moving " << id;
  }

  int64_t Tick(std::mt19937_64& rng, int max_seconds) {
    env_.clock().Advance(absl::Seconds(1 + rng() % max_seconds));
    return absl::ToUnixNanos(env_.clock().Now());
  }

  // Plays `n` referrals; returns what happened to each.
  std::vector<Played> Play(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<Played> out;
    const char* codes[] = {"not-eligible", "out-of-area", "service-not-offered"};
    for (int i = 0; i < n; ++i) {
      Played p;
      p.sender = rng() % 3 == 0 ? "org.clinic" : "org.stmarys";
      p.recipient = rng() % 2 == 0 ? "org.foodbank" : "org.shelter";
      p.service = rng() % 4 == 0 ? "housing-instability" : "food-insecurity";
      const std::string id = absl::StrCat("f-", i);
      p.at = Tick(rng, 600);
      Send(p.sender, id, p.recipient, p.service);
      const int path = static_cast<int>(rng() % 100);
      if (path < 85) {
        p.viewed = Tick(rng, 3600);
        v1::GetReferralRequest get;
        get.set_referral(absl::StrCat(p.sender, "/", id));
        EXPECT_TRUE(core_->Get(get, policy::Caller::Agency(p.recipient, "u-intake")).ok());
      }
      if (path < 55) {
        p.accepted = Tick(rng, 7200);
        Move(p, id, v1::TASK_ACCEPTED, p.recipient, "receiver");
        const int end = static_cast<int>(rng() % 10);
        if (end < 7) {
          p.closed = Tick(rng, 86400);
          p.completed = true;
          Move(p, id, v1::TASK_COMPLETED, p.recipient, "receiver");
        } else if (end < 8) {
          p.closed = Tick(rng, 86400);
          Move(p, id, v1::TASK_CANCELLED, p.sender, "sender", "other");
        }
      } else if (path < 80) {
        p.declined = p.closed = Tick(rng, 7200);
        p.code = codes[rng() % 3];
        Move(p, id, v1::TASK_REJECTED, p.recipient, "receiver", p.code);
      }
      out.push_back(p);
    }
    return out;
  }

  static void Add(const Played& p, Expected* e) {
    ++e->offered;
    if (p.viewed) {
      ++e->viewed;
      e->to_view.push_back(p.viewed - p.at);
    }
    if (p.accepted) {
      ++e->accepted;
      e->to_accept.push_back(p.accepted - p.at);
    }
    if (p.declined) {
      ++e->declined;
      ++e->reasons[p.code];
    }
    if (p.closed) {
      ++e->closed;
      e->to_close.push_back(p.closed - p.at);
    }
    if (p.completed) ++e->completed;
  }

  // The rows the test expects for `agency`'s scope ("" the network).
  static std::map<std::string, Expected> ExpectedRows(const std::vector<Played>& played,
                                                      const std::string& agency,
                                                      const std::string& group_by,
                                                      Expected* total) {
    std::map<std::string, Expected> rows;
    for (const Played& p : played) {
      if (!agency.empty() && p.sender != agency && p.recipient != agency) continue;
      Add(p, &rows[group_by == "service" ? p.service : p.recipient]);
      Add(p, total);
    }
    return rows;
  }

  void ExpectFigures(const std::vector<Played>& played, const policy::Caller& who,
                     const std::string& scope, const std::string& group_by) {
    v1::FiguresRequest req;
    req.set_group_by(group_by);
    auto got = audit_->Figures(req, who);
    ASSERT_TRUE(got.ok()) << got.status();
    Expected total;
    auto rows = ExpectedRows(played, scope, group_by, &total);
    ASSERT_EQ(got->rows_size(), static_cast<int>(rows.size())) << scope << " by " << group_by;
    for (const v1::FiguresRow& r : got->rows()) {
      ASSERT_TRUE(rows.contains(r.group())) << r.group();
      EXPECT_EQ(Text(r), Text(rows[r.group()])) << scope << " by " << group_by << ": " << r.group();
      std::map<std::string, uint64_t>& reasons = rows[r.group()].reasons;
      int small = 0;
      for (const auto& [code, n] : reasons) small += n >= 1 && n <= 10;
      for (const v1::ReasonCount& rc : r.declines_by_reason()) {
        ASSERT_TRUE(reasons.contains(rc.code())) << rc.code();
        const uint64_t n = reasons[rc.code()];
        if (n >= 1 && n <= 10) {
          EXPECT_TRUE(rc.count().suppressed()) << rc.code();
        } else if (!rc.count().suppressed()) {
          EXPECT_EQ(rc.count().value(), n) << rc.code();
        } else {
          EXPECT_EQ(small, 1) << "shown only when one other reason was suppressed";
        }
      }
    }
    EXPECT_EQ(Text(got->total()), Text(total)) << scope << " by " << group_by << ": total";
  }

  std::unique_ptr<AuditCore> audit_;
};

TEST_F(FiguresTest, EveryPartyGetsTheFiguresOfItsOwnReferralsExactly) {
  const uint64_t seed = std::random_device{}();
  std::cout << "seed " << seed << "\n";
  // The fixture's own referral-free history (a consent) is not counted.
  const std::vector<Played> played = Play(240, seed);
  for (const std::string group_by : {"agency", "service"}) {
    ExpectFigures(played, policy::Caller::HubAdmin("ops"), "", group_by);
    for (const std::string agency : {"org.stmarys", "org.clinic", "org.foodbank", "org.shelter"})
      ExpectFigures(played, policy::Caller::Agency(agency, "u-analyst"), agency, group_by);
  }
}

TEST_F(FiguresTest, AnAgencySeesNothingOfReferralsItNeitherSentNorReceived) {
  std::mt19937_64 rng(7);
  Played p{"org.clinic", "org.shelter", "food-insecurity"};
  for (int i = 0; i < 12; ++i) Send(p.sender, absl::StrCat("s-", i), p.recipient, p.service);
  v1::FiguresRequest req;
  auto foodbank = audit_->Figures(req, policy::Caller::Agency("org.foodbank", "u-analyst"));
  ASSERT_TRUE(foodbank.ok()) << foodbank.status();
  EXPECT_EQ(foodbank->rows_size(), 0);
  EXPECT_EQ(foodbank->total().offered().value(), 0u);
  EXPECT_FALSE(foodbank->total().offered().suppressed());
  auto stmarys = audit_->Figures(req, policy::Caller::Agency("org.stmarys", "u-analyst"));
  ASSERT_TRUE(stmarys.ok());
  EXPECT_EQ(stmarys->rows_size(), 0);
  auto shelter = audit_->Figures(req, policy::Caller::Agency("org.shelter", "u-analyst"));
  ASSERT_TRUE(shelter.ok());
  EXPECT_EQ(shelter->total().offered().value(), 12u);
}

TEST_F(FiguresTest, SmallCellsAreWithheldAndTheNetworkViewNamesNobody) {
  // Three referrals for housing: a cell of 3.
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(Send("org.stmarys", absl::StrCat("h-", i), "org.shelter", "housing-instability"));
  for (int i = 0; i < 11; ++i)
    ids.push_back(Send("org.stmarys", absl::StrCat("g-", i), "org.foodbank", "food-insecurity"));
  v1::FiguresRequest req;
  req.set_group_by("service");
  auto network = audit_->Figures(req, policy::Caller::HubAdmin("ops"));
  ASSERT_TRUE(network.ok()) << network.status();
  ASSERT_EQ(network->rows_size(), 2);
  EXPECT_EQ(network->rows(0).group(), "food-insecurity");
  EXPECT_EQ(network->rows(0).offered().value(), 11u);
  EXPECT_FALSE(network->rows(0).offered().suppressed());
  EXPECT_EQ(network->rows(1).group(), "housing-instability");
  EXPECT_TRUE(network->rows(1).offered().suppressed()) << "a cell of 3 shows as <11";
  EXPECT_EQ(network->rows(1).offered().value(), 0u) << "and its value is not given";
  EXPECT_TRUE(network->rows(1).acceptance().suppressed());
  EXPECT_TRUE(network->rows(0).to_first_view().suppressed()) << "nothing viewed: no time";
  EXPECT_EQ(network->scope(), "network");
  // Nothing in the answer names a referral or a person.
  const std::string bytes = network->SerializeAsString();
  for (const std::string& id : ids) {
    EXPECT_EQ(bytes.find(id.substr(id.find('/') + 1)), std::string::npos) << id;
  }
  EXPECT_EQ(bytes.find(subject_), std::string::npos);
  EXPECT_EQ(bytes.find("mrn"), std::string::npos);
}

TEST_F(FiguresTest, OnlyAgenciesAndHubAdminsAskAndBadRequestsAreRefused) {
  v1::FiguresRequest req;
  EXPECT_EQ(audit_->Figures(req, policy::Caller::None()).status().code(),
            absl::StatusCode::kUnauthenticated);
  req.set_group_by("person");
  EXPECT_EQ(audit_->Figures(req, policy::Caller::HubAdmin("ops")).status().code(),
            absl::StatusCode::kInvalidArgument);
  req.set_group_by("agency");
  req.set_from_unix_nanos(20);
  req.set_to_unix_nanos(10);
  EXPECT_EQ(audit_->Figures(req, policy::Caller::HubAdmin("ops")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The aggregation alone: complementary suppression of decline reasons.
TEST(FiguresAggregate, OneHiddenReasonBesideAShownTotalHidesTheNextSmallest) {
  ReferralFigures::Referral r;
  r.sender = "org.a";
  r.service = "food-insecurity";
  std::vector<ReferralFigures::Referral> all;
  auto declined = [&](const std::string& code, int n) {
    for (int i = 0; i < n; ++i) {
      ReferralFigures::Referral d = r;
      d.offers.push_back({"org.b", 1, 1, 0, 0, 5, code});
      all.push_back(d);
    }
  };
  declined("not-eligible", 3);
  declined("out-of-area", 12);
  declined("service-not-offered", 20);
  std::vector<const ReferralFigures::Referral*> ptrs;
  for (const auto& x : all) ptrs.push_back(&x);
  v1::FiguresResponse f = Aggregate(ptrs, "", "agency");
  ASSERT_EQ(f.rows_size(), 1);
  std::map<std::string, v1::Count> by_code;
  for (const auto& rc : f.rows(0).declines_by_reason()) by_code[rc.code()] = rc.count();
  EXPECT_TRUE(by_code["not-eligible"].suppressed());
  EXPECT_TRUE(by_code["out-of-area"].suppressed()) << "35 - 20 - x would give the 3 away";
  EXPECT_EQ(by_code["service-not-offered"].value(), 20u);
  EXPECT_EQ(f.rows(0).declined().value(), 35u);
}

}  // namespace
}  // namespace careloop::audit
