// The referral lifecycle: every (state, target state, party) triple against
// the table of issue 5, written out here independently of the code; reasons;
// and the FHIR Task.status codes of the public R4 and SDOH IG examples.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "services/referral/lifecycle.h"
#include "tests/support/test_env.h"

namespace careloop::referral {
namespace {

using v1::TaskStatus;

// (from, to, party) that are allowed, as the issue lists them.
std::set<std::tuple<std::string, std::string, Party>> Allowed() {
  const Party S = Party::kSender, R = Party::kRecipient;
  std::set<std::tuple<std::string, std::string, Party>> a = {
      {"requested", "accepted", R},  {"requested", "rejected", R},
      {"requested", "cancelled", S}, {"accepted", "in-progress", R},
      {"accepted", "on-hold", R},    {"accepted", "completed", R},
      {"accepted", "failed", R},     {"accepted", "cancelled", S},
      {"in-progress", "on-hold", R}, {"in-progress", "completed", R},
      {"in-progress", "failed", R},  {"in-progress", "cancelled", S},
      {"on-hold", "in-progress", R}, {"on-hold", "completed", R},
      {"on-hold", "failed", R},      {"on-hold", "cancelled", S}};
  for (const char* from : {"requested", "accepted", "rejected", "cancelled", "in-progress",
                           "on-hold", "completed", "failed"}) {
    a.insert({from, "entered-in-error", S});
  }
  return a;
}

std::vector<TaskStatus> AllStates() {
  std::vector<TaskStatus> out;
  for (int s = v1::TASK_REQUESTED; s <= v1::TASK_ENTERED_IN_ERROR; ++s)
    out.push_back(static_cast<TaskStatus>(s));
  return out;
}

TEST(ReferralLifecycle, EveryStateTransitionAndPartyTriple) {
  const auto allowed = Allowed();
  v1::StatusReason reason;
  reason.set_code("other");
  reason.set_text("see the thread");
  int ok = 0, denied = 0, impossible = 0;
  for (TaskStatus from : AllStates()) {
    for (TaskStatus to : AllStates()) {
      for (Party party : {Party::kSender, Party::kRecipient}) {
        const Party other = party == Party::kSender ? Party::kRecipient : Party::kSender;
        absl::Status s = CheckTransition(from, to, party, reason);
        const std::string f = FhirCode(from), t = FhirCode(to);
        SCOPED_TRACE(f + " -> " + t + (party == Party::kSender ? " by sender" : " by recipient"));
        if (allowed.contains({f, t, party})) {
          EXPECT_TRUE(s.ok()) << s;
          ++ok;
        } else if (allowed.contains({f, t, other})) {
          EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
          ++denied;
        } else {
          EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
          EXPECT_NE(std::string(s.message()).find("the referral is " + f), std::string::npos) << s;
          ++impossible;
        }
      }
    }
  }
  EXPECT_EQ(ok, static_cast<int>(allowed.size()));
  EXPECT_EQ(ok + denied + impossible, 9 * 9 * 2);
}

TEST(ReferralLifecycle, TerminalStatesOnlyBecomeEnteredInError) {
  for (TaskStatus from : AllStates()) {
    if (!IsTerminal(from)) continue;
    for (TaskStatus to : AllStates()) {
      absl::Status s = CheckTransition(from, to, Party::kSender, {});
      if (to == v1::TASK_ENTERED_IN_ERROR && from != v1::TASK_ENTERED_IN_ERROR) {
        EXPECT_TRUE(s.ok()) << FhirCode(from);
      } else {
        EXPECT_FALSE(s.ok()) << FhirCode(from) << " -> " << FhirCode(to);
      }
    }
  }
}

TEST(ReferralLifecycle, RejectCancelHoldAndFailNeedACodedReason) {
  const std::vector<std::tuple<TaskStatus, TaskStatus, Party>> needing = {
      {v1::TASK_REQUESTED, v1::TASK_REJECTED, Party::kRecipient},
      {v1::TASK_REQUESTED, v1::TASK_CANCELLED, Party::kSender},
      {v1::TASK_ACCEPTED, v1::TASK_ON_HOLD, Party::kRecipient},
      {v1::TASK_IN_PROGRESS, v1::TASK_FAILED, Party::kRecipient}};
  for (const auto& [from, to, party] : needing) {
    v1::StatusReason none;
    EXPECT_EQ(CheckTransition(from, to, party, none).code(), absl::StatusCode::kInvalidArgument);
    v1::StatusReason code_only;
    code_only.set_code("no-capacity");
    EXPECT_EQ(CheckTransition(from, to, party, code_only).code(),
              absl::StatusCode::kInvalidArgument);
    v1::StatusReason unknown;
    unknown.set_code("bored");
    unknown.set_text("no");
    EXPECT_EQ(CheckTransition(from, to, party, unknown).code(), absl::StatusCode::kInvalidArgument);
    v1::StatusReason good;
    good.set_code("no-capacity");
    good.set_text("all slots taken this week");
    EXPECT_TRUE(CheckTransition(from, to, party, good).ok());
  }
  // Accepting and completing need none.
  EXPECT_TRUE(CheckTransition(v1::TASK_REQUESTED, v1::TASK_ACCEPTED, Party::kRecipient, {}).ok());
  EXPECT_TRUE(
      CheckTransition(v1::TASK_IN_PROGRESS, v1::TASK_COMPLETED, Party::kRecipient, {}).ok());
}

TEST(ReferralLifecycle, FhirTaskStatusCodesOfThePublicExamples) {
  for (TaskStatus s : AllStates()) EXPECT_EQ(FromFhirCode(FhirCode(s)), s);
  EXPECT_EQ(FromFhirCode("draft"), std::nullopt) << "not a referral state";
  for (const char* file : {"fhir/sdoh-clinicalcare/SDOHCC-Task-OrderFulfillment-Example-1.json",
                           "fhir/r4-core/Task-example1.json", "fhir/r4-core/Task-example2.json",
                           "fhir/r4-core/Task-example6.json"}) {
    auto task =
        nlohmann::json::parse(careloop::testing::ReadFileOrDie(careloop::testing::TestData(file)));
    const std::string status = task["status"];
    auto parsed = FromFhirCode(status);
    // FHIR has states a referral never takes (draft, received, ready); the
    // ones it shares map both ways.
    if (parsed.has_value()) {
      EXPECT_EQ(FhirCode(*parsed), status) << file;
    } else {
      EXPECT_TRUE(status == "draft" || status == "received" || status == "ready")
          << file << ": " << status;
    }
  }
}

}  // namespace
}  // namespace careloop::referral
