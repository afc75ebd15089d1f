// Threads: signed messages between a referral's sender and recipient.
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

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanMessage(const trust::VerifiedEnvelope& v,
                                                            absl::string_view bytes,
                                                            const v1::PostMessageRequest& req,
                                                            v1::PostMessageResponse* resp) {
  const v1::Envelope& e = v.envelope;
  const auto& msg = static_cast<const v1::ReferralMessage&>(*v.payload);
  ASSIGN_OR_RETURN(const State st,
                   LoadVisible(Key(msg.sender_agency(), msg.referral_id()), e.sender_agency()));
  std::string to;
  bool from_recipient = false;
  if (e.sender_agency() == st.sender && e.actor().role() == "sender") {
    to = st.recipient;
  } else if (e.sender_agency() == st.recipient && e.actor().role() == "receiver") {
    to = st.sender;
    from_recipient = true;
  } else {
    return absl::PermissionDeniedError(
        absl::StrCat("only the sender (sender role) and the current recipient (receiver role) of ",
                     Key(st.sender, st.referral_id), " write in its thread"));
  }
  if (st.unassigned || st.status == v1::TASK_ENTERED_IN_ERROR) {
    return absl::FailedPreconditionError(
        absl::StrCat("referral ", Key(st.sender, st.referral_id), " has no recipient to write to"));
  }
  if (msg.sections().empty()) return absl::InvalidArgumentError("a message has a section");
  std::vector<v1::Section> sections(req.sections().begin(), req.sections().end());
  RETURN_IF_ERROR(VerifySections(msg.sections(), sections, /*require_all=*/true, options_.limits));
  std::vector<std::string> categories;
  for (const v1::SectionDigest& d : msg.sections()) {
    if (from_recipient && d.category() == "sud-part2") {
      return absl::PermissionDeniedError(
          "42 CFR part 2 prohibits redisclosing SUD records: a recipient may not pass them on in "
          "a thread");
    }
    if (!Contains(categories, d.category())) categories.push_back(d.category());
  }
  v1::CheckConsentRequest check;
  check.set_subject_id(st.subject_id);
  check.set_recipient_agency(to);
  check.set_purpose(st.manifest.purpose());
  for (const std::string& c : categories) check.add_categories(c);
  ASSIGN_OR_RETURN(v1::CheckConsentResponse decision, consent_->Decide(check));
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const auto& d : decision.decisions()) by_category[d.category()] = &d;
  const std::string key = Key(st.sender, st.referral_id);
  const std::string thread = names::stream::Thread(key);
  v1::AppendRequest append;
  v1::EventInput* posted_env = trust::AddEvent(&append, thread, names::event::kThreadMessage,
                                               st.subject_id, std::string(bytes));
  posted_env->add_agencies(e.sender_agency());
  posted_env->add_agencies(to);
  v1::ThreadPosted posted;
  posted.set_to_agency(to);
  for (const v1::Section& sec : sections) *posted.add_sections() = sec;
  for (const v1::SectionDigest& d : msg.sections()) {
    const v1::CategoryDecision* cd = by_category.at(d.category());
    if (!cd->permit()) {
      v1::WithheldSection* w = posted.add_withheld();
      w->set_section_id(d.section_id());
      w->set_category(d.category());
      w->set_reason(cd->reason());
      continue;
    }
    v1::DisclosureRecorded rec;
    rec.add_categories(d.category());
    rec.set_record_type("referral-message");
    rec.set_record_id(key);
    rec.set_disclosing_agency(e.sender_agency());
    rec.set_disclosing_actor(e.actor().user_id());
    rec.set_disclosure_id(absl::StrCat(key, "/", e.message_id(), "/", d.section_id()));
    ASSIGN_OR_RETURN(v1::AppendRequest one, consent::DisclosureAppend(decision, rec));
    for (v1::EventInput& ev : *one.mutable_events()) *append.add_events() = std::move(ev);
  }
  trust::AddEvent(&append, thread, names::event::kThreadPosted, st.subject_id,
                  posted.SerializeAsString());
  for (const v1::StreamVersion& sv : decision.read_versions())
    Expect(&append, sv.stream(), sv.version());
  *resp->mutable_withheld() = posted.withheld();
  return append;
}

absl::StatusOr<v1::PostMessageResponse> ReferralCore::PostMessage(
    const v1::PostMessageRequest& req) {
  absl::Status last;
  for (int attempt = 0; attempt < kDecisionAttempts; ++attempt) {
    v1::PostMessageResponse resp;
    absl::StatusOr<trust::Accepted> a = trust::AcceptSigned(
        req.envelope(), message_policy_, *directory_, seen_, ledger_, clock_->Now(),
        [&](const trust::VerifiedEnvelope& v, absl::string_view b, absl::Time) {
          return PlanMessage(v, b, req, &resp);
        });
    if (absl::IsAborted(a.status())) {
      last = a.status();  // consent changed first: decide again
      continue;
    }
    RETURN_IF_ERROR(a.status());
    ASSIGN_OR_RETURN(*resp.mutable_receipt(), ledger_->GetReceipt(a->change_seq));
    return resp;
  }
  return last;
}

absl::Status ReferralCore::AddThread(const State& st, absl::string_view caller,
                                     v1::ReferralView* view, v1::RecordAccessed* shown) {
  // A message's sections, in the record of the read, as "msg<seq>/<id>".
  auto note = [shown](const v1::Event& m, const v1::Section& sec, const char* authority) {
    if (shown == nullptr) return;
    v1::AccessedSection* a = shown->add_sections();
    a->set_section_id(absl::StrCat("msg", m.header().seq(), "/", sec.section_id()));
    a->set_category(sec.category());
    a->set_authority(authority);
  };
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadWholeStream(ledger_, names::stream::Thread(view->referral())));
  std::map<std::string, bool> permitted_now;  // category -> consent as of this read
  for (size_t i = 0; i + 1 < events.size(); i += 2) {
    const v1::Event& m = events[i];
    ASSIGN_OR_RETURN(v1::Envelope env, Parse<v1::Envelope>(m, m.payload()));
    ASSIGN_OR_RETURN(v1::ThreadPosted posted,
                     Parse<v1::ThreadPosted>(events[i + 1], events[i + 1].payload()));
    const bool author = env.sender_agency() == caller;
    if (!author && posted.to_agency() != caller) continue;  // not between the caller and anyone
    v1::ThreadEntry* t = view->add_thread();
    t->set_seq(m.header().seq());
    t->set_at_unix_nanos(m.header().commit_time_unix_nanos());
    t->set_by_agency(env.sender_agency());
    t->set_by_user(env.actor().user_id());
    t->set_message_envelope(m.payload());
    std::set<std::string> withheld;
    for (const auto& w : posted.withheld()) {
      withheld.insert(w.section_id());
      if (!author) *t->add_withheld() = w;
    }
    if (author) {
      *t->mutable_sections() = posted.sections();
      for (const v1::Section& sec : posted.sections()) note(m, sec, "sender");
      continue;
    }
    v1::CheckConsentRequest check;
    check.set_subject_id(st.subject_id);
    check.set_recipient_agency(std::string(caller));
    check.set_purpose(st.manifest.purpose());
    for (const v1::Section& sec : posted.sections()) {
      if (!permitted_now.contains(sec.category()) &&
          std::find(check.categories().begin(), check.categories().end(), sec.category()) ==
              check.categories().end()) {
        check.add_categories(sec.category());
      }
    }
    if (!check.categories().empty()) {
      ASSIGN_OR_RETURN(v1::CheckConsentResponse now, consent_->Decide(check));
      for (const auto& d : now.decisions()) permitted_now[d.category()] = d.permit();
    }
    for (const v1::Section& sec : posted.sections()) {
      if (withheld.contains(sec.section_id())) continue;
      if (permitted_now[sec.category()]) {
        *t->add_sections() = sec;
        note(m, sec, "consent");
      } else {
        v1::WithheldSection* w = t->add_withheld();
        w->set_section_id(sec.section_id());
        w->set_category(sec.category());
        w->set_reason("consent no longer permits it");
        w->set_since_disclosure(true);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace careloop::referral
