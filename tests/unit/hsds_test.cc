// Open Referral HSDS into the directory (services/directory/hsds.h): the
// published 3.0 and 3.1-dev examples map as documented, with their
// inconsistencies reported by row and not applied; a consistent dataset
// applies; planning against the directory signs only what changes.
#include "services/directory/hsds.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "services/directory/agencies.h"
#include "tests/support/test_env.h"

namespace careloop::directory::hsds {
namespace {

using ::careloop::testing::ReadFileOrDie;
using ::careloop::testing::TempDir;
using ::careloop::testing::TestData;
using nlohmann::json;

constexpr char kOrg[] = "hsds.d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610";

std::string Reports(const Dataset& d) {
  std::vector<std::string> lines;
  for (const Reported& r : d.reported) lines.push_back(r.where + ": " + r.why);
  return absl::StrJoin(lines, "\n");
}

bool Reported(const Dataset& d, absl::string_view where, absl::string_view why) {
  for (const auto& r : d.reported) {
    if (absl::StrContains(r.where, where) && absl::StrContains(r.why, why)) return true;
  }
  return false;
}

TEST(HsdsImport, ThePublishedOrganizationAndServiceAreOneListedAgency) {
  absl::StatusOr<Dataset> d = ReadDataset(TestData("hsds/3.0"), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->agencies.size(), 1u) << "organization_full.json and service_full.json name one";
  const ImportedAgency& a = d->agencies[0];
  EXPECT_EQ(a.agency_id, kOrg);
  EXPECT_EQ(a.profile.display_name(), "Example Organization Inc.");
  EXPECT_EQ(a.profile.kind(), v1::COMMUNITY_AGENCY);
  EXPECT_EQ(a.profile.source(), "hsds:d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610");
  EXPECT_EQ(a.profile.address().city(), "MyCity");
  EXPECT_EQ(a.profile.address().postal_code(), "ABC 1234");
  EXPECT_EQ(a.profile.contact().phone(), "+44 1234 234567") << "the quoted number unquoted";
  EXPECT_EQ(a.profile.contact().url(), "http://example.com");
  EXPECT_EQ(a.profile.eligibility().min_age(), 12u);
  EXPECT_EQ(a.profile.eligibility().max_age(), 100u);
  EXPECT_TRUE(std::find(a.profile.languages().begin(), a.profile.languages().end(), "ur") !=
              a.profile.languages().end());
  // Its taxonomy term ("taxonomy/code") names no careloop service: listed
  // without one, and said so; its area is prose, said so too.
  EXPECT_EQ(a.profile.services_size(), 0);
  EXPECT_TRUE(Reported(*d, "service ac148810", "is a careloop service code")) << Reports(*d);
  EXPECT_TRUE(Reported(*d, "service ac148810", "service area is described")) << Reports(*d);
  EXPECT_TRUE(d->capacity.empty());
}

TEST(HsdsImport, TheCapacityExamplesInconsistenciesAreReportedByRowAndNotApplied) {
  absl::StatusOr<Dataset> d = ReadDataset(TestData("hsds/3.1-dev"), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->capacity.empty()) << "nothing of the example capacity is applied";
  // The JSON capacity: more available than its maximum, a unit that is a
  // weight, the unit's id the capacity's own, and no careloop code.
  const std::string json_row = "capacity 8896b788-7b3e-11ef-8db9-7f3d040352b3";
  for (const char* why :
       {"available 12 is more than maximum 10", "unit 'Kilogram' (kgm) does not count places",
        "its unit's id is the capacity's own id", "its service has no careloop service code"}) {
    EXPECT_TRUE(Reported(*d, json_row, why)) << why << "\n" << Reports(*d);
  }
  // The CSV row: its unit_id is not the id units.csv gives.
  EXPECT_TRUE(Reported(*d, "service_capacity.csv line 2 (8896b788",
                       "unit_id 187a37a2-7b40-11ef-9790-dbf7623d4407 is not in units.csv"))
      << Reports(*d);
  EXPECT_FALSE(Reported(*d, "schema", "")) << "schema files are not data";
}

// The 3.1-dev service made consistent: a food-insecurity term, beds, 3 of
// 10 available; beside it a file that is not JSON and quoted CSV.
class ConsistentDataset : public ::testing::Test {
 protected:
  void SetUp() override {
    json s = json::parse(ReadFileOrDie(TestData("hsds/3.1-dev/service_full.json")));
    s["attributes"][0]["taxonomy_term"]["code"] = "food-insecurity";
    s["capacities"][0]["unit"] = {
        {"id", "u-beds"}, {"name", "Bed"}, {"scheme", "local"}, {"identifier", "bed"}};
    s["capacities"][0]["available"] = 3;
    Write("service.json", s.dump());
    Write("broken.json", "{ this is not json");
    Write("service_capacity.csv",
          "id,service_id,unit_id,available,maximum,description,updated\r\n"
          "c-2,ac148810-d857-441c-9679-408f346de14b,u-2,4,4,\"Beds, men only\",2024-09-25\r\n"
          "c-3,nope,u-2,1,4,x,2024-09-25\r\n"
          "c-4,ac148810-d857-441c-9679-408f346de14b,u-2\r\n");
    Write("units.csv", "id,name,scheme,identifier,uri\r\nu-2,Beds,local,bed,\r\n");
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.Sub(name), std::ios::binary) << text;
  }
  TempDir dir_;
};

TEST_F(ConsistentDataset, AppliesWhatIsConsistentAndReportsTheRest) {
  absl::StatusOr<Dataset> d = ReadDataset(dir_.path(), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->agencies.size(), 1u);
  EXPECT_EQ(d->agencies[0].profile.services(0), "food-insecurity");
  EXPECT_TRUE(Reported(*d, "broken.json", "is not JSON: nothing of it imported")) << Reports(*d);
  // 3 beds in the JSON, 4 in the CSV's c-2 (whose quoted description holds
  // a comma): one figure for the service.
  ASSERT_EQ(d->capacity.size(), 1u) << Reports(*d);
  EXPECT_EQ(d->capacity[0].agency_id, kOrg);
  EXPECT_EQ(d->capacity[0].service, "food-insecurity");
  EXPECT_EQ(d->capacity[0].open_slots, 7u);
  EXPECT_TRUE(Reported(*d, "line 3 (c-3)", "service_id nope is not a service of this import"));
  EXPECT_TRUE(Reported(*d, "line 4 (c-4)", "column count differs")) << Reports(*d);
}

TEST_F(ConsistentDataset, OneCapacityRecordGivenTwiceCountsOnceAndTwoFiguresForItAreReported) {
  const std::string header = "id,service_id,unit_id,available,maximum,description,updated\r\n";
  const std::string same =
      "8896b788-7b3e-11ef-8db9-7f3d040352b3,ac148810-d857-441c-9679-408f346de14b,u-2,";
  Write("service_capacity.csv", header + same + "3,10,beds,2024-09-25\r\n");
  absl::StatusOr<Dataset> d = ReadDataset(dir_.path(), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->capacity.size(), 1u) << Reports(*d);
  EXPECT_EQ(d->capacity[0].open_slots, 3u) << "the JSON and the CSV row are one record";

  Write("service_capacity.csv", header + same + "5,10,beds,2024-09-25\r\n");
  d = ReadDataset(dir_.path(), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->capacity.empty());
  EXPECT_TRUE(Reported(*d, "service_capacity.csv line 2", "two different numbers")) << Reports(*d);
}

TEST_F(ConsistentDataset, ASecondImportChangesNothingAndAnAgencysOwnCareSurvives) {
  absl::StatusOr<Dataset> d = ReadDataset(dir_.path(), DefaultServiceCodes());
  ASSERT_TRUE(d.ok()) << d.status();
  std::map<std::string, v1::AgencyRecord> directory;
  auto current = [&](const std::string& id) -> std::optional<v1::AgencyRecord> {
    auto it = directory.find(id);
    if (it == directory.end()) return std::nullopt;
    return it->second;
  };
  Plan first = PlanImport(*d, current);
  ASSERT_EQ(first.agencies.size(), 1u);
  EXPECT_EQ(first.agencies[0].change, Change::kRegister);
  EXPECT_EQ(first.capacity.size(), 1u);
  // As the hub would hold it after the first import (the last capacity
  // report per service wins).
  v1::AgencyRecord& r = directory[kOrg];
  r.set_agency_id(kOrg);
  *r.mutable_profile() = first.agencies[0].profile;
  v1::CapacityEntry* e = r.add_capacity();
  e->set_service("food-insecurity");
  e->set_open_slots(first.capacity.back().open_slots);
  // Onboarded since, the agency set its area and hid its address.
  r.mutable_profile()->mutable_area()->add_postal_codes("97201");
  r.mutable_profile()->mutable_address()->set_confidential(true);
  Plan second = PlanImport(*d, current);
  EXPECT_EQ(second.agencies[0].change, Change::kUnchanged);
  EXPECT_TRUE(second.capacity.empty()) << "the same open places: nothing to report again";
  e->set_open_slots(2);
  EXPECT_EQ(PlanImport(*d, current).capacity.size(), 1u) << "held 2, the data says 7";
  e->set_open_slots(7);

  // A changed name in the data: an update that keeps what HSDS does not give.
  Dataset renamed = *d;
  renamed.agencies[0].profile.set_display_name("Example Org (renamed)");
  Plan third = PlanImport(renamed, current);
  ASSERT_EQ(third.agencies[0].change, Change::kUpdate);
  EXPECT_EQ(third.agencies[0].profile.display_name(), "Example Org (renamed)");
  EXPECT_EQ(third.agencies[0].profile.area().postal_codes(0), "97201");
  EXPECT_TRUE(third.agencies[0].profile.address().confidential());

  // An agency of that id entered by hand is not the import's to change.
  r.mutable_profile()->clear_source();
  Plan fourth = PlanImport(*d, current);
  EXPECT_TRUE(fourth.agencies.empty());
  EXPECT_TRUE(fourth.capacity.empty());
  bool left_alone = false;
  for (const auto& rep : fourth.reported)
    left_alone = left_alone || absl::StrContains(rep.why, "was not imported from HSDS");
  EXPECT_TRUE(left_alone);
}

TEST(HsdsImport, AFolderThatCannotBeListedIsAnError) {
  EXPECT_FALSE(ReadDataset("/nonexistent/hsds", DefaultServiceCodes()).ok());
}

}  // namespace
}  // namespace careloop::directory::hsds
