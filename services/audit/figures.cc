#include "services/audit/figures.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "careloop/v1/envelope.pb.h"
#include "careloop/v1/referral.pb.h"
#include "services/names/names.h"
#include "services/trust/append.h"

namespace careloop::audit {

namespace {

constexpr uint32_t kPage = 1000;
constexpr int64_t kNanosPerSecond = 1'000'000'000;

// What one row adds up before it is suppressed.
struct Tally {
  uint64_t offered = 0, viewed = 0, accepted = 0, declined = 0, completed = 0, closed = 0,
           escalated = 0, unassigned = 0;
  std::vector<int64_t> to_view, to_accept, to_close;
  std::map<std::string, uint64_t> reasons;
};

bool Small(uint64_t v) { return v >= 1 && v <= kSmallCell; }

v1::Count CountOf(uint64_t v) {
  v1::Count c;
  if (Small(v)) {
    c.set_suppressed(true);
  } else {
    c.set_value(v);
  }
  return c;
}

// Nearest rank: the ceil(q * n)-th smallest.
int64_t Percentile(const std::vector<int64_t>& sorted, double q) {
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

v1::Timing TimingOf(std::vector<int64_t> nanos) {
  v1::Timing t;
  if (nanos.size() <= kSmallCell) {
    t.set_suppressed(true);
    return t;
  }
  std::sort(nanos.begin(), nanos.end());
  t.set_n(nanos.size());
  t.set_p50_seconds(Percentile(nanos, 0.5) / kNanosPerSecond);
  t.set_p90_seconds(Percentile(nanos, 0.9) / kNanosPerSecond);
  return t;
}

v1::Rate RateOf(uint64_t numerator, uint64_t denominator) {
  v1::Rate r;
  if (Small(numerator) || denominator <= kSmallCell) {
    r.set_suppressed(true);
    return r;
  }
  r.set_value(static_cast<double>(numerator) / static_cast<double>(denominator));
  return r;
}

v1::FiguresRow RowOf(const std::string& group, const Tally& t) {
  v1::FiguresRow row;
  row.set_group(group);
  *row.mutable_offered() = CountOf(t.offered);
  *row.mutable_viewed() = CountOf(t.viewed);
  *row.mutable_accepted() = CountOf(t.accepted);
  *row.mutable_declined() = CountOf(t.declined);
  *row.mutable_completed() = CountOf(t.completed);
  *row.mutable_closed() = CountOf(t.closed);
  *row.mutable_escalated() = CountOf(t.escalated);
  *row.mutable_unassigned() = CountOf(t.unassigned);
  *row.mutable_to_first_view() = TimingOf(t.to_view);
  *row.mutable_to_accept() = TimingOf(t.to_accept);
  *row.mutable_to_close() = TimingOf(t.to_close);
  const uint64_t answered = t.accepted + t.declined;
  *row.mutable_acceptance() = RateOf(t.accepted, answered);
  *row.mutable_decline() = RateOf(t.declined, answered);
  *row.mutable_completion() = RateOf(t.completed, t.accepted);
  int small = 0;
  for (const auto& [code, n] : t.reasons) {
    v1::ReasonCount* r = row.add_declines_by_reason();
    r->set_code(code);
    *r->mutable_count() = CountOf(n);
    small += Small(n);
  }
  // Complementary suppression: one hidden reason beside a shown total would
  // be the total minus the others, so the smallest shown one goes too.
  if (small == 1 && !Small(t.declined)) {
    v1::ReasonCount* smallest = nullptr;
    for (v1::ReasonCount& r : *row.mutable_declines_by_reason()) {
      if (r.count().suppressed()) continue;
      if (smallest == nullptr || r.count().value() < smallest->count().value()) smallest = &r;
    }
    if (smallest != nullptr) {
      smallest->mutable_count()->set_value(0);
      smallest->mutable_count()->set_suppressed(true);
    }
  }
  return row;
}

void AddOffer(const ReferralFigures::Offer& o, bool last, Tally* t) {
  ++t->offered;
  if (o.viewed_at != 0) {
    ++t->viewed;
    t->to_view.push_back(o.viewed_at - o.routed_at);
  }
  if (o.accepted_at != 0) {
    ++t->accepted;
    t->to_accept.push_back(o.accepted_at - o.routed_at);
  }
  if (o.declined_at != 0) {
    ++t->declined;
    ++t->reasons[o.decline_code.empty() ? "other" : o.decline_code];
  }
  const bool timed_out = !last && o.accepted_at == 0 && o.declined_at == 0;
  if (o.warned || timed_out) ++t->escalated;
}

void AddOutcome(const ReferralFigures::Referral& r, Tally* t) {
  if (r.unassigned) ++t->unassigned;
  if (r.closed_at != 0) {
    ++t->closed;
    t->to_close.push_back(r.closed_at - r.submitted_at);
  }
  if (r.completed) ++t->completed;
}

}  // namespace

v1::FiguresResponse Aggregate(const std::vector<const ReferralFigures::Referral*>& referrals,
                              const std::string& agency, const std::string& group_by) {
  std::map<std::string, Tally> rows;
  Tally total;
  const bool by_service = group_by == "service";
  for (const ReferralFigures::Referral* r : referrals) {
    const bool sent = agency.empty() || r->sender == agency;
    for (size_t i = 0; i < r->offers.size(); ++i) {
      const ReferralFigures::Offer& o = r->offers[i];
      if (!sent && o.agency != agency) continue;
      const bool last = i + 1 == r->offers.size();
      AddOffer(o, last, &rows[by_service ? r->service : o.agency]);
      AddOffer(o, last, &total);
    }
    const std::string holder = r->offers.empty() || r->unassigned ? "-" : r->offers.back().agency;
    if (!sent && holder != agency) continue;
    AddOutcome(*r, &rows[by_service ? r->service : holder]);
    AddOutcome(*r, &total);
  }
  v1::FiguresResponse resp;
  resp.set_scope(agency.empty() ? "network" : absl::StrCat("agency:", agency));
  for (const auto& [group, t] : rows) *resp.add_rows() = RowOf(group, t);
  *resp.mutable_total() = RowOf("total", total);
  return resp;
}

absl::StatusOr<v1::FiguresResponse> ReferralFigures::Compute(const v1::FiguresRequest& req,
                                                             const std::string& agency,
                                                             int64_t now_unix_nanos) {
  const std::string group_by = req.group_by().empty() ? "agency" : req.group_by();
  if (group_by != "agency" && group_by != "service")
    return absl::InvalidArgumentError("group_by is agency or service");
  // No end: everything submitted so far (the answer says until when).
  const int64_t to = req.to_unix_nanos() == 0 ? INT64_MAX : req.to_unix_nanos();
  if (req.from_unix_nanos() < 0 || to < req.from_unix_nanos())
    return absl::InvalidArgumentError("the period ends before it starts");
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CatchUp());
  std::vector<const Referral*> chosen;
  for (const auto& [stream, r] : referrals_) {
    if (r.submitted_at >= req.from_unix_nanos() && r.submitted_at < to) chosen.push_back(&r);
  }
  v1::FiguresResponse resp = Aggregate(chosen, agency, group_by);
  resp.set_from_unix_nanos(req.from_unix_nanos());
  resp.set_to_unix_nanos(req.to_unix_nanos() == 0 ? now_unix_nanos : to);
  resp.set_as_of_seq(applied_);
  return resp;
}

absl::Status ReferralFigures::CatchUp() {
  while (true) {
    v1::ReadRequest r;
    r.set_from_seq(applied_ + 1);
    r.set_limit(kPage);
    r.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->Read(r));
    if (page.events().empty()) return absl::OkStatus();
    for (const v1::Event& e : page.events()) {
      RETURN_IF_ERROR(Apply(e));
      applied_ = e.header().seq();
    }
  }
}

namespace {

template <typename M>
absl::StatusOr<M> ParseAs(const v1::Event& e, const std::string& bytes) {
  M m;
  if (!m.ParseFromString(bytes)) return trust::Corrupt(e, "does not parse");
  return m;
}

// The status change an event's envelope carries.
absl::StatusOr<v1::UpdateReferralStatus> StatusOf(const v1::Event& e) {
  ASSIGN_OR_RETURN(v1::Envelope env, ParseAs<v1::Envelope>(e, e.payload()));
  return ParseAs<v1::UpdateReferralStatus>(e, env.payload());
}

}  // namespace

absl::Status ReferralFigures::Apply(const v1::Event& e) {
  const auto& h = e.header();
  if (!absl::StartsWith(h.stream(), names::stream::kReferralPrefix)) return absl::OkStatus();
  const int64_t at = h.commit_time_unix_nanos();
  Referral& r = referrals_[h.stream()];
  Offer* current = r.offers.empty() ? nullptr : &r.offers.back();
  const std::string& type = h.type();
  if (type == names::event::kReferralSubmitted) {
    ASSIGN_OR_RETURN(v1::Envelope env, ParseAs<v1::Envelope>(e, e.payload()));
    ASSIGN_OR_RETURN(v1::ReferralManifest m, ParseAs<v1::ReferralManifest>(e, env.payload()));
    r.sender = env.sender_agency();
    r.service = m.service_category();
    r.submitted_at = at;
  } else if (type == names::event::kReferralRouted) {
    ASSIGN_OR_RETURN(v1::ReferralRouted routed, ParseAs<v1::ReferralRouted>(e, e.payload()));
    r.offers.push_back(Offer{routed.recipient_agency(), routed.attempt(), at});
    r.unassigned = false;
    if (r.closed_by_decline) r.closed_at = 0;  // declined, and routed on: still open
    r.closed_by_decline = false;
  } else if (type == names::event::kReferralViewed) {
    if (current != nullptr && current->agency == e.payload() && current->viewed_at == 0)
      current->viewed_at = at;
  } else if (type == names::event::kReferralDeadlineWarning) {
    ASSIGN_OR_RETURN(auto w, ParseAs<v1::ReferralDeadlineWarning>(e, e.payload()));
    if (current != nullptr && current->attempt == w.attempt()) current->warned = true;
  } else if (type == names::event::kReferralUnassigned) {
    r.unassigned = true;
    if (r.closed_by_decline) r.closed_at = 0;  // the sender may send it again
    r.closed_by_decline = false;
  } else if (type == names::event::kStatusChanged && current != nullptr) {
    ASSIGN_OR_RETURN(v1::UpdateReferralStatus u, StatusOf(e));
    switch (u.status()) {
      case v1::TASK_ACCEPTED:
        if (current->accepted_at == 0) current->accepted_at = at;
        break;
      case v1::TASK_REJECTED:
        if (current->declined_at == 0) {
          current->declined_at = at;
          current->decline_code = u.reason().code();
        }
        if (r.closed_at == 0) {
          r.closed_at = at;
          r.closed_by_decline = true;
        }
        break;
      case v1::TASK_COMPLETED:
        r.completed = true;
        if (r.closed_at == 0) r.closed_at = at;
        break;
      case v1::TASK_CANCELLED:
      case v1::TASK_FAILED:
      case v1::TASK_ENTERED_IN_ERROR:
        if (r.closed_at == 0) r.closed_at = at;
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace careloop::audit
