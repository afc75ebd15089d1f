// Views: a referral as its sender or a recipient may see it, and the sent
// and inbox lists.
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

namespace {

void NoteShown(v1::RecordAccessed* shown, const v1::Section& s, const char* authority,
               const v1::CategoryDecision* d = nullptr) {
  if (shown == nullptr) return;
  v1::AccessedSection* a = shown->add_sections();
  a->set_section_id(s.section_id());
  a->set_category(s.category());
  if (d != nullptr && !d->break_glass_id().empty()) {
    a->set_authority("break-glass");
    a->set_break_glass_id(d->break_glass_id());
  } else {
    a->set_authority(authority);
  }
  if (d != nullptr) *a->mutable_consent_ids() = d->consent_ids();
}

}  // namespace

absl::StatusOr<v1::ReferralView> ReferralCore::ViewFor(const State& st, absl::string_view caller,
                                                       bool with_detail,
                                                       v1::RecordAccessed* read_record) {
  const bool is_sender = caller == st.sender;
  auto former = st.former.find(std::string(caller));
  const Tenure* tenure = former == st.former.end() ? nullptr : &former->second;
  if (!is_sender && caller != st.recipient && tenure == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("no referral ", Key(st.sender, st.referral_id),
                                                    " is visible to agency ", caller));
  }
  // The referral as the sender or its current recipient sees it now, or as a
  // former recipient held it.
  auto summary = [&st](const Tenure* held) {
    v1::ReferralView v;
    v.set_referral(Key(st.sender, st.referral_id));
    v.set_sender_agency(st.sender);
    *v.mutable_manifest() = st.manifest;
    if (held != nullptr) {
      v.set_status(held->status);
      v.set_version(held->version);
      *v.mutable_outcome() = held->outcome;
      v.set_attempt(held->attempt);
      v.set_viewed_unix_nanos(held->viewed_at);
      v.set_delivered_unix_nanos(held->delivered_at);
      return v;
    }
    v.set_recipient_agency(st.recipient);
    v.set_status(st.status);
    v.set_version(st.version);
    *v.mutable_outcome() = st.outcome;
    v.set_unassigned(st.unassigned);
    v.set_attempt(st.attempt);
    v.set_viewed_unix_nanos(st.viewed_at);
    v.set_delivered_unix_nanos(st.delivered_at);
    return v;
  };
  v1::ReferralView v = summary(tenure);
  if (tenure != nullptr) v.set_recipient_agency(std::string(caller));
  const size_t seen = tenure != nullptr ? tenure->history : st.history.size();
  if (seen > 0 && seen <= st.history.size()) {
    v.set_submitted_unix_nanos(st.history.front().at_unix_nanos());
    v.set_updated_unix_nanos(st.history[seen - 1].at_unix_nanos());
  }
  if (!with_detail) return v;
  RETURN_IF_ERROR(AddThread(st, caller, &v, read_record));
  v.set_manifest_envelope(st.manifest_envelope);
  for (size_t i = 0; i < seen && i < st.history.size(); ++i) *v.add_history() = st.history[i];
  if (is_sender) {
    v.set_subject_id(st.subject_id);
    for (const auto& s : st.sections) {
      *v.add_sections() = s;
      NoteShown(read_record, s, "sender");
    }
    for (const auto& w : st.withheld) *v.add_withheld() = w;
    return v;
  }
  // A recipient, current or former: what was withheld when it was routed
  // stays withheld, and consent is checked again now; nothing is recorded.
  const std::vector<v1::WithheldSection>& at_routing =
      tenure != nullptr ? tenure->withheld : st.withheld;
  v1::CheckConsentRequest check;
  check.set_subject_id(st.subject_id);
  check.set_recipient_agency(std::string(caller));
  check.set_purpose(st.manifest.purpose());
  std::set<std::string> categories;
  for (const auto& s : st.sections) categories.insert(s.category());
  for (const auto& c : categories) check.add_categories(c);
  ASSIGN_OR_RETURN(v1::CheckConsentResponse decision, consent_->Decide(check));
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const auto& d : decision.decisions()) by_category[d.category()] = &d;
  std::set<std::string> withheld_at_routing;
  for (const auto& w : at_routing) withheld_at_routing.insert(w.section_id());
  for (const v1::Section& s : st.sections) {
    const v1::CategoryDecision* d = by_category.at(s.category());
    if (d->permit() && !withheld_at_routing.contains(s.section_id())) {
      *v.add_sections() = s;
      NoteShown(read_record, s, "consent", d);
      if (s.category() == "sud-part2") v.set_redisclosure_notice(options_.part2_notice);
      continue;
    }
    v1::WithheldSection* w = v.add_withheld();
    w->set_section_id(s.section_id());
    w->set_category(s.category());
    if (withheld_at_routing.contains(s.section_id())) {
      w->set_reason("not permitted when the referral was routed");
    } else {
      w->set_reason(d->reason());
      w->set_since_disclosure(true);
    }
  }
  return v;
}

absl::StatusOr<ReferralCore::State> ReferralCore::LoadVisible(absl::string_view referral,
                                                              absl::string_view caller) {
  const size_t slash = referral.find('/');
  if (slash == absl::string_view::npos)
    return absl::InvalidArgumentError("a referral is named <sender>/<referral id>");
  // A referral that does not exist and one the caller never held get the
  // same answer: not an oracle for which referrals exist.
  const absl::Status hidden = absl::PermissionDeniedError(
      absl::StrCat("no referral ", referral, " is visible to agency ", caller));
  absl::StatusOr<State> st = Load(referral.substr(0, slash), referral.substr(slash + 1));
  if (absl::IsNotFound(st.status())) return hidden;
  RETURN_IF_ERROR(st.status());
  if (caller != st->sender && !st->recipients.contains(std::string(caller))) return hidden;
  return st;
}

absl::StatusOr<v1::ReferralView> ReferralCore::View(absl::string_view referral,
                                                    absl::string_view caller) {
  ASSIGN_OR_RETURN(State st, LoadVisible(referral, caller));
  return ViewFor(st, caller, /*with_detail=*/true);
}

absl::StatusOr<v1::ReferralView> ReferralCore::Get(const v1::GetReferralRequest& req,
                                                   const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Get"));
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  absl::StatusOr<State> st = LoadVisible(req.referral(), caller);
  RETURN_IF_ERROR(st.status());
  v1::RecordAccessed read;
  ASSIGN_OR_RETURN(v1::ReferralView view, ViewFor(*st, caller, /*with_detail=*/true, &read));
  if (caller == st->recipient && st->viewed_at == 0 && !st->unassigned) {
    // Viewed (not accepted): the sender learns the recipient opened it. Once
    // per recipient; losing a race to another change just means next time.
    v1::AppendRequest viewed;
    v1::EventInput* ev =
        trust::AddEvent(&viewed, ReferralStream(st->sender, st->referral_id),
                        names::event::kReferralViewed, st->subject_id, st->recipient);
    ev->add_agencies(st->sender);
    Expect(&viewed, ev->stream(), st->version);
    absl::StatusOr<v1::Commit> c = ledger_->Append(std::move(viewed));
    if (c.ok()) {
      // The answer is the referral as it is now: viewed, at its new version.
      view.set_viewed_unix_nanos(c->commit_time_unix_nanos());
      view.set_updated_unix_nanos(c->commit_time_unix_nanos());
      if (c->stream_versions_size() > 0) view.set_version(c->stream_versions(0));
    }
  }
  if (caller == directory::kHubAgency) return view;  // the hub's own rendering
  read.set_agency(caller);
  read.set_actor(who.actor);
  read.set_rpc("ReferralService.Get");
  read.set_record_type("referral");
  read.set_record_id(req.referral());
  read.set_subject_id(st->subject_id);
  RETURN_IF_ERROR(ledger_->Append(trust::AccessRecord(read)).status());
  return view;
}

absl::StatusOr<std::string> ReferralCore::Admit(const policy::Caller& caller,
                                                absl::string_view method) const {
  RETURN_IF_ERROR(gate_.Admit(caller, method));
  return caller.CoreId();
}

absl::Status ReferralCore::RecordRead(const policy::Caller& who, absl::string_view rpc,
                                      const google::protobuf::Message& request) {
  const std::string caller = who.CoreId();
  if (caller.empty() || caller == directory::kHubAgency) return absl::OkStatus();  // internal
  return ledger_->Append(trust::ReadRecord(caller, who.actor, rpc, request)).status();
}

absl::StatusOr<v1::ListReferralsResponse> ReferralCore::List(const v1::ListReferralsRequest& req,
                                                             absl::string_view caller, bool sent) {
  RETURN_IF_ERROR(storage::ValidateAgencyId(caller));
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  // Every referral event that concerns the caller names the referral's stream.
  std::set<std::string> streams;
  uint64_t after = 0;
  while (true) {
    v1::ReadIndexRequest r;
    r.set_agency(std::string(caller));
    r.set_after_seq(after);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
    for (const v1::Event& e : page.events()) {
      if (e.header().type() == names::event::kReferralRouted) streams.insert(e.header().stream());
      after = e.header().seq();
    }
    if (!page.more()) break;
  }
  v1::ListReferralsResponse resp;
  for (const std::string& s : streams) {
    // referral/<sender>/<id>
    const size_t a = s.find('/'), b = s.find('/', a + 1);
    ASSIGN_OR_RETURN(State st, Load(s.substr(a + 1, b - a - 1), s.substr(b + 1)));
    const bool mine = sent ? st.sender == caller : st.recipient == caller;
    if (!mine) continue;
    if (req.status() != v1::TASK_STATUS_UNSPECIFIED && st.status != req.status()) continue;
    ASSIGN_OR_RETURN(*resp.add_referrals(), ViewFor(st, caller, /*with_detail=*/false));
  }
  return resp;
}

absl::StatusOr<v1::ListReferralsResponse> ReferralCore::Sent(const v1::ListReferralsRequest& req,
                                                             const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Sent"));
  ASSIGN_OR_RETURN(v1::ListReferralsResponse r, List(req, caller, /*sent=*/true));
  RETURN_IF_ERROR(RecordRead(who, "ReferralService.Sent", req));
  return r;
}

absl::StatusOr<v1::ListReferralsResponse> ReferralCore::Inbox(const v1::ListReferralsRequest& req,
                                                              const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Inbox"));
  ASSIGN_OR_RETURN(v1::ListReferralsResponse r, List(req, caller, /*sent=*/false));
  RETURN_IF_ERROR(RecordRead(who, "ReferralService.Inbox", req));
  return r;
}

}  // namespace careloop::referral
