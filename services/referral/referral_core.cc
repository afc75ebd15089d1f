// The referral core: a referral's state folded from its stream, and the
// ranking of candidate recipients.
#include "services/referral/referral_core.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/referral/internal.h"
#include "services/referral/lifecycle.h"
#include "services/referral/routing.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::referral {

std::string ReferralCore::ReferralStream(absl::string_view sender, absl::string_view id) {
  return names::stream::Referral(sender, id);
}

ReferralCore::ReferralCore(storage::Ledger* ledger, directory::Agencies* directory,
                           storage::ProjectionRunner* directory_runner, consent::Decider* consent,
                           Clock* clock, ReferralOptions options)
    : ledger_(ledger),
      directory_(directory),
      directory_runner_(directory_runner),
      consent_(consent),
      clock_(clock),
      options_(std::move(options)),
      submit_policy_(
          policy::ReferralTable().Envelopes("Submit", options_.max_clock_skew, directory)),
      update_policy_(
          policy::ReferralTable().Envelopes("UpdateStatus", options_.max_clock_skew, directory)),
      message_policy_(
          policy::ReferralTable().Envelopes("PostMessage", options_.max_clock_skew, directory)),
      gate_(&policy::ReferralTable(), directory, /*tls=*/false),
      seen_(ledger) {}

absl::StatusOr<ReferralCore::State> ReferralCore::Load(absl::string_view sender,
                                                       absl::string_view referral_id) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(sender));
  RETURN_IF_ERROR(storage::ValidateToken(referral_id, "referral id"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadWholeStream(ledger_, ReferralStream(sender, referral_id)));
  if (events.empty())
    return absl::NotFoundError(absl::StrCat("no referral ", Key(sender, referral_id)));
  State st;
  st.sender = std::string(sender);
  st.referral_id = std::string(referral_id);
  for (const v1::Event& e : events) {
    const std::string& type = e.header().type();
    v1::ReferralHistoryEntry h;
    h.set_seq(e.header().seq());
    h.set_at_unix_nanos(e.header().commit_time_unix_nanos());
    h.set_type(type);
    if (type == names::event::kReferralSubmitted) {
      ASSIGN_OR_RETURN(v1::Envelope env, Parse<v1::Envelope>(e, e.payload()));
      ASSIGN_OR_RETURN(st.manifest, Parse<v1::ReferralManifest>(e, env.payload()));
      st.manifest_envelope = e.payload();
      h.set_by_agency(env.sender_agency());
      h.set_by_user(env.actor().user_id());
    } else if (type == names::event::kReferralSections) {
      ASSIGN_OR_RETURN(v1::ReferralSectionsStored s,
                       Parse<v1::ReferralSectionsStored>(e, e.payload()));
      st.sections.assign(s.sections().begin(), s.sections().end());
      continue;  // not a step anyone took
    } else if (type == names::event::kReferralRouted) {
      ASSIGN_OR_RETURN(v1::ReferralRouted r, Parse<v1::ReferralRouted>(e, e.payload()));
      if (!st.recipient.empty() && st.recipient != r.recipient_agency()) {
        st.former[st.recipient] = Tenure{st.withheld, st.status,  st.outcome,   st.history.size(),
                                         st.version,  st.attempt, st.viewed_at, st.delivered_at};
      }
      st.former.erase(r.recipient_agency());
      st.recipient = r.recipient_agency();
      st.recipients.insert(r.recipient_agency());
      st.subject_id = r.subject_id();
      st.withheld.assign(r.withheld().begin(), r.withheld().end());
      st.status = v1::TASK_REQUESTED;
      st.routed_at = absl::FromUnixNanos(e.header().commit_time_unix_nanos());
      st.attempt = r.attempt();
      st.last_reason.Clear();
      st.viewed_at = 0;
      st.delivered_at = 0;
      h.set_recipient_agency(r.recipient_agency());
    } else if (type == names::event::kReferralDelivered) {
      ASSIGN_OR_RETURN(v1::ReferralDelivered d, Parse<v1::ReferralDelivered>(e, e.payload()));
      // Counts once, for the routing it was delivered for; a late or second
      // acknowledgement changes nothing.
      if (d.recipient_agency() != st.recipient || d.attempt() != st.attempt ||
          st.delivered_at != 0) {
        continue;
      }
      st.delivered_at = e.header().commit_time_unix_nanos();
      h.set_by_agency(d.recipient_agency());
    } else if (type == names::event::kReferralDeadlineWarning) {
      ASSIGN_OR_RETURN(v1::ReferralDeadlineWarning w,
                       Parse<v1::ReferralDeadlineWarning>(e, e.payload()));
      if (w.attempt() == st.attempt) st.warned_attempt = w.attempt();
      h.set_recipient_agency(w.recipient_agency());
    } else if (type == names::event::kReferralViewed) {
      if (e.payload() == st.recipient) st.viewed_at = e.header().commit_time_unix_nanos();
      h.set_by_agency(e.payload());
    } else if (type == names::event::kReferralUnassigned) {
      ASSIGN_OR_RETURN(v1::ReferralUnassigned u, Parse<v1::ReferralUnassigned>(e, e.payload()));
      st.unassigned = true;
      h.mutable_reason()->set_code("unassigned");
      h.mutable_reason()->set_text(u.reason());
    } else if (type == names::event::kStatusChanged) {
      ASSIGN_OR_RETURN(v1::Envelope env, Parse<v1::Envelope>(e, e.payload()));
      ASSIGN_OR_RETURN(v1::UpdateReferralStatus u,
                       Parse<v1::UpdateReferralStatus>(e, env.payload()));
      st.status = u.status();
      st.last_reason = u.reason();
      if (u.has_outcome()) st.outcome = u.outcome();
      *h.mutable_reason() = u.reason();
      h.set_by_agency(env.sender_agency());
      h.set_by_user(env.actor().user_id());
    } else {
      return Corrupt(e, "has a type the referral service does not know");
    }
    h.set_status(st.status);
    st.history.push_back(std::move(h));
    st.version = e.header().stream_version();
  }
  st.version = events.back().header().stream_version();
  return st;
}

std::vector<v1::RoutingCandidate> ReferralCore::Rank(const v1::ReferralManifest& m,
                                                     const std::set<std::string>& exclude) {
  std::vector<v1::AgencyRecord> agencies;
  for (v1::AgencyRecord& a : directory_->All()) {
    if (!exclude.contains(a.agency_id())) agencies.push_back(std::move(a));
  }
  return RankCandidates(agencies, m.service_category(), m.routing().criteria(),
                        OpenSlotsFor(agencies, m.service_category()));
}

}  // namespace careloop::referral
