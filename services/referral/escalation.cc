// Escalation: overdue or refused referrals go to the next candidate, or
// back to their sender as unassigned.
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/names/names.h"
#include "services/referral/internal.h"
#include "services/referral/lifecycle.h"
#include "services/referral/referral_core.h"
#include "services/referral/routing.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::referral {

absl::Status ReferralCore::Reroute(const State& st, absl::string_view why) {
  const std::string key = Key(st.sender, st.referral_id);
  const uint32_t max = st.manifest.routing().max_attempts() != 0
                           ? st.manifest.routing().max_attempts()
                           : options_.default_max_attempts;
  std::vector<v1::RoutingCandidate> ranked;
  if (st.manifest.routing().has_criteria() && st.attempt < max) {
    std::set<std::string> exclude = st.recipients;
    exclude.insert(st.sender);
    ranked = Rank(st.manifest, exclude);
  }
  v1::AppendRequest append;
  const std::string stream = ReferralStream(st.sender, st.referral_id);
  if (!ranked.empty() && ranked.front().eligible()) {
    Route route{st.sender,    key,    st.subject_id,  false,
                &st.manifest, ranked, st.attempt + 1, {st.recipient}};
    RETURN_IF_ERROR(AddRoute(route, &append).status());
  } else {
    // Nobody left: tell the sender, and let it send again.
    v1::ReferralUnassigned u;
    u.set_attempts(st.attempt);
    u.set_reason(std::string(why));
    v1::EventInput* ev = trust::AddEvent(&append, stream, names::event::kReferralUnassigned,
                                         st.subject_id, u.SerializeAsString());
    ev->add_agencies(st.sender);
    trust::AddEvent(&append, kRoutingIndex, names::event::kRoutingSettled, {}, key);
    RETURN_IF_ERROR(AddDedupeClose(st, &append));
  }
  Expect(&append, stream, st.version);
  return ledger_->Append(std::move(append)).status();
}

absl::StatusOr<int> ReferralCore::Escalate() {
  absl::MutexLock lock(&escalate_mu_);
  // The open referrals: the routing index read on from where the last pass
  // stopped, so a pass costs what changed plus the open ones, not the whole
  // history.
  ASSIGN_OR_RETURN(std::vector<v1::Event> routing,
                   storage::ReadStreamFrom(ledger_, kRoutingIndex, routing_version_ + 1));
  for (const v1::Event& e : routing) {
    if (e.header().type() == names::event::kRoutingOpened) open_.insert(e.payload());
    if (e.header().type() == names::event::kRoutingSettled) open_.erase(e.payload());
    routing_version_ = e.header().stream_version();
  }
  const std::set<std::string> open = open_;
  const absl::Time now = clock_->Now();
  int moved = 0;
  for (const std::string& key : open) {
    const size_t slash = key.find('/');
    absl::StatusOr<State> loaded = Load(key.substr(0, slash), key.substr(slash + 1));
    if (!loaded.ok()) {
      // One referral that cannot be loaded must not stall every other one.
      const uint64_t skipped = escalation_skipped_.fetch_add(1) + 1;
      log::Error("referral.escalation_skipped", {{"referral", key},
                                                 {"cause", std::string(loaded.status().message())},
                                                 {"skipped_total", skipped}});
      continue;
    }
    const State& st = *loaded;
    if (st.unassigned) continue;
    absl::Duration deadline = options_.deadline_routine;
    switch (st.manifest.priority()) {
      case v1::STAT:
        deadline = options_.deadline_stat;
        break;
      case v1::ASAP:
        deadline = options_.deadline_asap;
        break;
      case v1::URGENT:
        deadline = options_.deadline_urgent;
        break;
      default:
        break;
    }
    std::string why;
    if (st.status == v1::TASK_REQUESTED && now < st.routed_at + deadline &&
        now >= st.routed_at + deadline * 3 / 4 && st.warned_attempt != st.attempt) {
      // Three quarters of the time to accept are gone: both parties hear it
      // once per routing attempt.
      v1::ReferralDeadlineWarning w;
      w.set_recipient_agency(st.recipient);
      w.set_attempt(st.attempt);
      w.set_deadline_unix_nanos(absl::ToUnixNanos(st.routed_at + deadline));
      v1::AppendRequest warn;
      v1::EventInput* ev = trust::AddEvent(&warn, ReferralStream(st.sender, st.referral_id),
                                           names::event::kReferralDeadlineWarning, st.subject_id,
                                           w.SerializeAsString());
      ev->add_agencies(st.recipient);
      ev->add_agencies(st.sender);
      Expect(&warn, ev->stream(), st.version);
      absl::Status s = ledger_->Append(std::move(warn)).status();
      if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;  // a lost race: next pass
      continue;
    }
    if (st.status == v1::TASK_REQUESTED && now >= st.routed_at + deadline) {
      why = absl::StrCat("not accepted within ", absl::FormatDuration(deadline));
    } else if (st.status == v1::TASK_REJECTED && st.last_reason.code() == "no-capacity") {
      why = "declined for capacity";
    } else {
      continue;
    }
    absl::Status s = Reroute(st, why);
    if (s.ok()) {
      ++moved;
    } else if (!absl::IsFailedPrecondition(s)) {
      return s;  // a lost race is retried on the next pass
    }
  }
  return moved;
}

}  // namespace careloop::referral
