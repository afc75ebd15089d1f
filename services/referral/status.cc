// Status changes under the lifecycle's rules, with capacity slots.
#include "base/status.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/strings.h"
#include "services/names/names.h"
#include "services/referral/internal.h"
#include "services/referral/lifecycle.h"
#include "services/referral/referral_core.h"
#include "services/referral/routing.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::referral {

namespace {

// Who may make the change: the sender in the sender role, or the current
// recipient in the receiver role; nobody else (an agency that never held the
// referral is refused before, by LoadVisible).
absl::StatusOr<Party> UpdatingParty(const v1::Envelope& e, const std::string& sender,
                                    const std::string& recipient, absl::string_view key) {
  if (e.sender_agency() == sender) {
    if (e.actor().role() != "sender")
      return absl::PermissionDeniedError("the sender's changes are made in the sender role");
    return Party::kSender;
  }
  if (e.sender_agency() == recipient) {
    if (e.actor().role() != "receiver")
      return absl::PermissionDeniedError("the recipient's changes are made in the receiver role");
    return Party::kRecipient;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("agency ", e.sender_agency(), " is no longer the recipient of ", key));
}

}  // namespace

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanUpdate(const trust::VerifiedEnvelope& v,
                                                           absl::string_view bytes) {
  const v1::Envelope& e = v.envelope;
  const auto& u = static_cast<const v1::UpdateReferralStatus&>(*v.payload);
  ASSIGN_OR_RETURN(const State st,
                   LoadVisible(Key(u.sender_agency(), u.referral_id()), e.sender_agency()));
  const std::string key = Key(st.sender, st.referral_id);
  ASSIGN_OR_RETURN(Party party, UpdatingParty(e, st.sender, st.recipient, key));
  if (u.expected_version() != 0 && u.expected_version() != st.version) {
    return absl::AbortedError(absl::StrCat("referral ", key, " is at version ", st.version,
                                           ", not ", u.expected_version(), "; read it again"));
  }
  RETURN_IF_ERROR(CheckTransition(st.status, u.status(), party, u.reason()));
  if (u.status() == v1::TASK_COMPLETED && u.outcome().provided().empty())
    return absl::InvalidArgumentError("a completed referral says what was provided (outcome)");
  v1::AppendRequest append;
  const std::string stream = ReferralStream(st.sender, st.referral_id);
  v1::EventInput* ev = trust::AddEvent(&append, stream, names::event::kStatusChanged, st.subject_id,
                                       std::string(bytes));
  ev->add_agencies(st.sender);
  ev->add_agencies(st.recipient);
  Expect(&append, stream, st.version);
  RETURN_IF_ERROR(AddCapacityChange(st, u.status(), &append));
  const bool capacity_rejection =
      u.status() == v1::TASK_REJECTED && u.reason().code() == "no-capacity";
  if (u.status() == v1::TASK_ACCEPTED || (IsTerminal(u.status()) && !capacity_rejection)) {
    // Settled: escalation leaves it alone from now on.
    trust::AddEvent(&append, kRoutingIndex, names::event::kRoutingSettled, {}, key);
  }
  if (IsTerminal(u.status()) && !capacity_rejection) RETURN_IF_ERROR(AddDedupeClose(st, &append));
  return append;
}

absl::Status ReferralCore::AddCapacityChange(const State& st, v1::TaskStatus to,
                                             v1::AppendRequest* append) {
  // Capacity: accepting takes one of the recipient's open slots for the
  // service (if it reports capacity for it) under a precondition on its
  // capacity stream, so concurrent accepts never take more than there are;
  // ending an accepted referral gives the slot back.
  const std::string key = Key(st.sender, st.referral_id);
  std::optional<v1::AgencyRecord> recipient = directory_->Get(st.recipient);
  const v1::CapacityEntry* entry = nullptr;
  if (recipient.has_value()) {
    for (const v1::CapacityEntry& c : recipient->capacity()) {
      if (c.service() == st.manifest.service_category()) entry = &c;
    }
  }
  if (entry == nullptr) return absl::OkStatus();
  const std::string capacity = names::stream::Capacity(st.recipient);
  v1::CapacitySlot slot;
  slot.set_service(entry->service());
  slot.set_referral(key);
  const char* type = nullptr;
  if (to == v1::TASK_ACCEPTED) {
    if (directory::OpenSlots(*entry) <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("agency ", st.recipient, " has no open capacity for ", entry->service(),
                       "; decline with no-capacity, or report new capacity first"));
    }
    type = names::event::kSlotTaken;
    Expect(append, capacity, recipient->capacity_version());
  } else if (IsTerminal(to) && Contains(entry->holders(), key)) {
    type = names::event::kSlotReleased;
  }
  if (type != nullptr) {
    trust::AddEvent(append, capacity, type, {}, slot.SerializeAsString())
        ->add_agencies(st.recipient);
  }
  return absl::OkStatus();
}

absl::Status ReferralCore::AddDedupeClose(const State& st, v1::AppendRequest* append) {
  // The referral no longer blocks a new one for the same need.
  const std::string key = Key(st.sender, st.referral_id);
  const std::string dedupe = DedupeStream(st.sender, st.subject_id, st.manifest.service_category());
  ASSIGN_OR_RETURN(std::vector<v1::Event> d, storage::ReadLastEvent(ledger_, dedupe));
  if (!d.empty() && d.back().header().type() == names::event::kDedupeOpened &&
      d.back().payload() == key) {
    trust::AddEvent(append, dedupe, names::event::kDedupeClosed, {}, key)->add_agencies(st.sender);
    Expect(append, dedupe, d.back().header().stream_version());
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Receipt> ReferralCore::UpdateStatus(absl::string_view bytes) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<trust::Accepted> a =
        trust::AcceptSigned(bytes, update_policy_, *directory_, seen_, ledger_, clock_->Now(),
                            [this](const trust::VerifiedEnvelope& v, absl::string_view b,
                                   absl::Time) { return PlanUpdate(v, b); });
    if (absl::IsAborted(a.status()) && attempt < kDecisionAttempts) {
      // The referral or the recipient's capacity moved first: catch up and
      // decide again (a referral that moved answers with its new state; of
      // two racing accepts one wins).
      ASSIGN_OR_RETURN(v1::SignedHead head, ledger_->Head(0));
      RETURN_IF_ERROR(directory_runner_->WaitFor(head.tree_size(), kProjectionWait));
      continue;
    }
    RETURN_IF_ERROR(a.status());
    // The directory (capacity) reflects this change before the answer.
    if (a->last_seq != 0) RETURN_IF_ERROR(directory_runner_->WaitFor(a->last_seq, kProjectionWait));
    v1::UpdateReferralStatus u;
    u.ParseFromString(a->envelope.payload());
    if (a->last_seq != 0 && u.status() == v1::TASK_REJECTED && u.reason().code() == "no-capacity") {
      // Declined for capacity: on to the next candidate now. If that loses a
      // race, escalation picks it up on its next pass.
      absl::StatusOr<State> st = Load(u.sender_agency(), u.referral_id());
      if (st.ok()) Reroute(*st, "declined for capacity").IgnoreError();
    }
    return ledger_->GetReceipt(a->change_seq);
  }
}

}  // namespace careloop::referral
