// The referral lifecycle: SDOH Clinical Care IG task states, which party may
// move a referral from one to another, and which moves need a reason.
//
//   requested   -> accepted | rejected (recipient), cancelled (sender)
//   accepted    -> in-progress | on-hold | completed | failed (recipient), cancelled (sender)
//   in-progress -> on-hold | completed | failed (recipient), cancelled (sender)
//   on-hold     -> in-progress | completed | failed (recipient), cancelled (sender)
//   any         -> entered-in-error (sender)
// Terminal: rejected, cancelled, completed, failed, entered-in-error.
// A coded reason and text are required to reject, cancel, hold or fail.
#pragma once

#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "careloop/v1/referral.pb.h"

namespace careloop::referral {

enum class Party { kSender, kRecipient };

bool IsTerminal(v1::TaskStatus s);
bool NeedsReason(v1::TaskStatus to);
const std::set<std::string>& ReasonCodes();

// OK if `party` may move a referral from `from` to `to` with `reason`:
// PERMISSION_DENIED when the move exists but belongs to the other party,
// FAILED_PRECONDITION naming the current state when it does not exist,
// INVALID_ARGUMENT for a missing or unknown reason.
absl::Status CheckTransition(v1::TaskStatus from, v1::TaskStatus to, Party party,
                             const v1::StatusReason& reason);

// FHIR Task.status codes ("in-progress", ...).
std::string FhirCode(v1::TaskStatus s);
std::optional<v1::TaskStatus> FromFhirCode(absl::string_view code);

}  // namespace careloop::referral
