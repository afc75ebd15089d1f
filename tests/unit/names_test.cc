// The registry of names is the ledger's vocabulary: these tests hold it to
// the proto package and to itself, so a typo in a constant cannot slip into
// the format.
#include "services/names/names.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "careloop/v1/consent.pb.h"
#include "careloop/v1/directory.pb.h"
#include "careloop/v1/notification.pb.h"
#include "careloop/v1/referral.pb.h"
#include "google/protobuf/descriptor.h"
#include "services/trust/envelope.h"

namespace careloop {
namespace {

// Links every proto file whose messages are signed payloads.
const google::protobuf::DescriptorPool* Pool() {
  (void)v1::RegisterAgency::descriptor();
  (void)v1::GrantConsent::descriptor();
  (void)v1::ReferralManifest::descriptor();
  (void)v1::SetWebhook::descriptor();
  return google::protobuf::DescriptorPool::generated_pool();
}

TEST(NamesTest, EveryPayloadTypeIsAMessageOfThePackage) {
  for (std::string_view p : names::payload::All()) {
    EXPECT_NE(Pool()->FindMessageTypeByName(std::string(p)), nullptr) << p;
  }
}

TEST(NamesTest, EventTypesOfSignedChangesAreTheirPayloadsShortNames) {
  const std::set<std::string_view> events(names::event::All().begin(), names::event::All().end());
  // Referral submissions, status changes and messages are stored under
  // events of their own names; every other signed payload is stored under
  // its short type name.
  const std::set<std::string_view> renamed = {names::payload::kReferralManifest,
                                              names::payload::kUpdateReferralStatus,
                                              names::payload::kReferralMessage};
  for (std::string_view p : names::payload::All()) {
    if (renamed.contains(p)) continue;
    EXPECT_TRUE(events.contains(trust::ShortTypeName(absl::string_view(p.data(), p.size())))) << p;
  }
}

TEST(NamesTest, NoNameIsListedTwice) {
  for (const auto* list :
       {&names::payload::All(), &names::event::All(), &names::stream::AllPrefixes()}) {
    const std::set<std::string_view> unique(list->begin(), list->end());
    EXPECT_EQ(unique.size(), list->size());
  }
}

TEST(NamesTest, StreamBuildersPutTheKeyAfterTheirPrefix) {
  EXPECT_EQ(names::stream::Referral("org.stmarys", "r-1"), "referral/org.stmarys/r-1");
  EXPECT_EQ(names::stream::Referral("org.stmarys/r-1"), "referral/org.stmarys/r-1");
  EXPECT_EQ(names::stream::Thread("org.stmarys/r-1"), "thread/org.stmarys/r-1");
  EXPECT_EQ(names::stream::Message("org.foodbank", "m-9"), "msg/org.foodbank/m-9");
  EXPECT_EQ(names::stream::Dedupe("org.stmarys", "s-1", "food-insecurity"),
            "dedupe/org.stmarys/s-1/food-insecurity");
  EXPECT_EQ(names::stream::Notify("org.foodbank", "intake"), "notify/org.foodbank/intake");
  EXPECT_EQ(names::stream::SubmitKey("org.stmarys", "m-1"), "submit/org.stmarys/m-1");
  EXPECT_EQ(names::stream::Agency("org.foodbank"), "agency/org.foodbank");
  EXPECT_EQ(names::stream::Capacity("org.foodbank"), "capacity/org.foodbank");
}

TEST(NamesTest, ReferralKeyOfReadsReferralAndThreadStreamsOnly) {
  EXPECT_EQ(names::stream::ReferralKeyOf("referral/org.stmarys/r-1"), "org.stmarys/r-1");
  EXPECT_EQ(names::stream::ReferralKeyOf("thread/org.stmarys/r-1"), "org.stmarys/r-1");
  EXPECT_EQ(names::stream::ReferralKeyOf("consent/s-1"), "");
  EXPECT_EQ(names::stream::ReferralKeyOf("referral"), "");
}

}  // namespace
}  // namespace careloop
