// A referral core on a real ledger with the real directory and consent
// cores, and helpers that sign referrals and status changes as the test
// agencies of ConsentEnv: shared by the referral and notification tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "services/referral/referral_core.h"
#include "tests/support/consent_env.h"

namespace careloop::testing {

using careloop::referral::RandomBytes;
using careloop::referral::ReferralCore;
using careloop::referral::SealSections;

class ReferralFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(env_.Start().ok());
    core_ = std::make_unique<ReferralCore>(env_.ledger(), env_.directory_state(), env_.runner(),
                                           env_.consent(), &env_.clock());
    // The patient's consent: contact and social needs to the network.
    subject_ = *env_.NewSubject("000123");
    consent_id_ = *env_.Grant(ConsentEnv::NetworkConsent(subject_, {"contact", "social-needs"}));
  }

  std::vector<v1::Section> Sections() {
    std::vector<v1::Section> out;
    auto add = [&](const char* id, const char* cat, std::string content) {
      v1::Section s;
      s.set_section_id(id);
      s.set_category(cat);
      s.set_media_type("text/plain");
      s.set_content(std::move(content));
      out.push_back(s);
    };
    add("contact", "contact", "phone 555-0100");
    add("needs", "social-needs", "food insecurity screen positive");
    add("bh", "behavioral-health", "depression screen positive");
    return out;
  }

  // A signed referral to `to` (or by criteria), with its sections.
  v1::SubmitReferralRequest Referral(const std::string& id, const std::string& to = "org.foodbank",
                                     const std::string& mrn = "000123",
                                     std::vector<v1::Section> sections = {}) {
    if (sections.empty()) sections = Sections();
    v1::ReferralManifest m;
    m.set_referral_id(id);
    m.mutable_subject()->set_authority("org.stmarys/mrn");
    m.mutable_subject()->set_value(mrn);
    m.set_service_category("food-insecurity");
    m.set_reason("discharge: food insecurity");
    m.set_priority(v1::URGENT);
    m.set_purpose("care-coordination");
    if (!to.empty()) m.mutable_routing()->set_recipient_agency(to);
    auto digests = SealSections(&sections, RandomBytes);
    EXPECT_TRUE(digests.ok());
    for (auto& d : *digests) *m.add_sections() = d;
    v1::SubmitReferralRequest req;
    req.set_envelope(env_.Sign(m, "org.stmarys", "sender"));
    for (auto& s : sections) *req.add_sections() = s;
    return req;
  }

  std::string Update(const std::string& id, v1::TaskStatus to, const std::string& agency,
                     const std::string& role, const std::string& code = "",
                     const std::string& provided = "", uint64_t expected_version = 0) {
    v1::UpdateReferralStatus u;
    u.set_sender_agency("org.stmarys");
    u.set_referral_id(id);
    u.set_status(to);
    u.set_expected_version(expected_version);
    if (!code.empty()) {
      u.mutable_reason()->set_code(code);
      u.mutable_reason()->set_text("see notes");
    }
    if (!provided.empty()) u.mutable_outcome()->set_provided(provided);
    return env_.Sign(u, agency, role);
  }

  void ReportSlots(const std::vector<std::pair<std::string, uint32_t>>& reports) {
    for (const auto& [agency, slots] : reports) {
      v1::ReportCapacity c;
      c.set_agency_id(agency);
      c.set_service("food-insecurity");
      c.set_open_slots(slots);
      ASSERT_TRUE(env_.directory()->Submit(env_.Sign(c, agency, "receiver")).ok());
    }
  }

  // A referral routed by criteria (the subject's postal code) instead of a name.
  v1::SubmitReferralRequest ByCriteria(const std::string& id) {
    auto req = Referral(id, "");
    v1::Envelope e;
    e.ParseFromString(req.envelope());
    v1::ReferralManifest m;
    m.ParseFromString(e.payload());
    m.mutable_routing()->mutable_criteria()->set_postal_code("97201");
    req.set_envelope(env_.Sign(m, "org.stmarys", "sender"));
    return req;
  }

  // The referral as `caller` sees it.
  absl::StatusOr<v1::ReferralView> ViewAs(const std::string& caller,
                                          const std::string& referral = "org.stmarys/r-1") {
    v1::GetReferralRequest get;
    get.set_referral(referral);
    return core_->Get(get, Who(caller));
  }

  int Count(const std::string& type) {
    int n = 0;
    v1::ReadRequest r;
    for (uint64_t from = 1;;) {
      r.set_from_seq(from);
      auto page = env_.ledger()->Read(r);
      if (!page.ok() || page->events().empty()) break;
      for (const auto& e : page->events()) {
        n += e.header().type() == type;
        from = e.header().seq() + 1;
      }
    }
    return n;
  }

  void ExpectRefusedWritingNothing(const absl::Status& s, absl::StatusCode code,
                                   const std::string& fragment) {
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(std::string(s.message()).find(fragment), std::string::npos) << s;
  }

  ConsentEnv env_;
  std::unique_ptr<ReferralCore> core_;
  std::string subject_, consent_id_;
};

}  // namespace careloop::testing
