#include "services/referral/lifecycle.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace careloop::referral {
namespace {

using v1::TaskStatus;

// (from, to) -> who may make the move.
const std::map<std::pair<TaskStatus, TaskStatus>, Party>& Moves() {
  static const auto* moves = [] {
    auto* m = new std::map<std::pair<TaskStatus, TaskStatus>, Party>;
    auto recipient = [&](TaskStatus from, std::initializer_list<TaskStatus> to) {
      for (TaskStatus t : to) (*m)[{from, t}] = Party::kRecipient;
    };
    recipient(v1::TASK_REQUESTED, {v1::TASK_ACCEPTED, v1::TASK_REJECTED});
    recipient(v1::TASK_ACCEPTED,
              {v1::TASK_IN_PROGRESS, v1::TASK_ON_HOLD, v1::TASK_COMPLETED, v1::TASK_FAILED});
    recipient(v1::TASK_IN_PROGRESS, {v1::TASK_ON_HOLD, v1::TASK_COMPLETED, v1::TASK_FAILED});
    recipient(v1::TASK_ON_HOLD, {v1::TASK_IN_PROGRESS, v1::TASK_COMPLETED, v1::TASK_FAILED});
    for (TaskStatus from :
         {v1::TASK_REQUESTED, v1::TASK_ACCEPTED, v1::TASK_IN_PROGRESS, v1::TASK_ON_HOLD}) {
      (*m)[{from, v1::TASK_CANCELLED}] = Party::kSender;
    }
    for (int s = v1::TASK_REQUESTED; s <= v1::TASK_ENTERED_IN_ERROR; ++s) {
      if (s != v1::TASK_ENTERED_IN_ERROR)
        (*m)[{static_cast<TaskStatus>(s), v1::TASK_ENTERED_IN_ERROR}] = Party::kSender;
    }
    return m;
  }();
  return *moves;
}

const char* PartyName(Party p) { return p == Party::kSender ? "sender" : "recipient"; }

}  // namespace

bool IsTerminal(TaskStatus s) {
  return s == v1::TASK_REJECTED || s == v1::TASK_CANCELLED || s == v1::TASK_COMPLETED ||
         s == v1::TASK_FAILED || s == v1::TASK_ENTERED_IN_ERROR;
}

bool NeedsReason(TaskStatus to) {
  return to == v1::TASK_REJECTED || to == v1::TASK_CANCELLED || to == v1::TASK_ON_HOLD ||
         to == v1::TASK_FAILED;
}

const std::set<std::string>& ReasonCodes() {
  static const std::set<std::string> codes = {
      "no-capacity",       "not-eligible",        "out-of-area", "service-not-offered",
      "unable-to-contact", "declined-by-subject", "duplicate",   "other"};
  return codes;
}

absl::Status CheckTransition(TaskStatus from, TaskStatus to, Party party,
                             const v1::StatusReason& reason) {
  auto it = Moves().find({from, to});
  if (it == Moves().end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the referral is ", FhirCode(from), " and cannot become ", FhirCode(to)));
  }
  if (it->second != party) {
    return absl::PermissionDeniedError(absl::StrCat("only the ", PartyName(it->second),
                                                    " may make a ", FhirCode(from), " referral ",
                                                    FhirCode(to)));
  }
  if (NeedsReason(to)) {
    if (reason.code().empty() || reason.text().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a referral becomes ", FhirCode(to), " only with a reason code and text"));
    }
  }
  if (!reason.code().empty() && !ReasonCodes().contains(reason.code())) {
    return absl::InvalidArgumentError(absl::StrCat("unknown reason code '", reason.code(), "'"));
  }
  return absl::OkStatus();
}

std::string FhirCode(TaskStatus s) {
  switch (s) {
    case v1::TASK_REQUESTED:
      return "requested";
    case v1::TASK_ACCEPTED:
      return "accepted";
    case v1::TASK_REJECTED:
      return "rejected";
    case v1::TASK_CANCELLED:
      return "cancelled";
    case v1::TASK_IN_PROGRESS:
      return "in-progress";
    case v1::TASK_ON_HOLD:
      return "on-hold";
    case v1::TASK_COMPLETED:
      return "completed";
    case v1::TASK_FAILED:
      return "failed";
    case v1::TASK_ENTERED_IN_ERROR:
      return "entered-in-error";
    default:
      return "unknown";
  }
}

std::optional<TaskStatus> FromFhirCode(absl::string_view code) {
  for (int s = v1::TASK_REQUESTED; s <= v1::TASK_ENTERED_IN_ERROR; ++s) {
    if (FhirCode(static_cast<TaskStatus>(s)) == code) return static_cast<TaskStatus>(s);
  }
  return std::nullopt;
}

}  // namespace careloop::referral
