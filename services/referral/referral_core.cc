#include "services/referral/referral_core.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/status.h"
#include "services/referral/lifecycle.h"
#include "services/referral/routing.h"
#include "storage/validate.h"

namespace careloop::referral {
namespace {

constexpr absl::Duration kProjectionWait = absl::Seconds(10);
constexpr int kDecisionAttempts = 3;
// Every referral's routing opens and settles here; escalation reads it.
constexpr char kRoutingIndex[] = "routing-open";

template <typename List>
bool Has(const List& list, absl::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

absl::Status Corrupt(const v1::Event& e, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("referral event seq ", e.header().seq(), " (", e.header().type(), ") ", what));
}

template <typename T>
absl::StatusOr<T> Parse(const v1::Event& e, absl::string_view bytes) {
  T p;
  if (!p.ParseFromString(std::string(bytes))) return Corrupt(e, "does not parse");
  return p;
}

std::string DedupeStream(absl::string_view sender, absl::string_view subject,
                         absl::string_view category) {
  return absl::StrCat("dedupe/", sender, "/", subject, "/", category);
}

std::string Key(absl::string_view sender, absl::string_view id) {
  return absl::StrCat(sender, "/", id);
}

void Expect(v1::AppendRequest* req, const std::string& stream, uint64_t version) {
  v1::Precondition* p = req->add_preconditions();
  p->set_stream(stream);
  if (version == 0) {
    p->set_must_not_exist(true);
  } else {
    p->set_expected_version(version);
  }
}

}  // namespace

struct ReferralCore::State {
  std::string sender, referral_id;
  std::string manifest_envelope;
  v1::ReferralManifest manifest;
  std::vector<v1::Section> sections;
  std::string subject_id;
  std::string recipient;
  std::set<std::string> recipients;  // current and former
  std::vector<v1::WithheldSection> withheld;
  v1::TaskStatus status = v1::TASK_STATUS_UNSPECIFIED;
  v1::Outcome outcome;
  uint64_t version = 0;
  std::vector<v1::ReferralHistoryEntry> history;
  absl::Time routed_at;  // the current routing's commit time
  uint32_t attempt = 0;
  bool unassigned = false;
  v1::StatusReason last_reason;
  int64_t viewed_at = 0;        // by the current recipient
  int64_t delivered_at = 0;     // to the current recipient
  uint32_t warned_attempt = 0;  // the routing attempt a deadline warning was sent for
};

std::string ReferralCore::ReferralStream(absl::string_view sender, absl::string_view id) {
  return absl::StrCat("referral/", sender, "/", id);
}

ReferralCore::ReferralCore(storage::Ledger* ledger, directory::DirectoryState* directory,
                           storage::ProjectionRunner* directory_runner,
                           consent::ConsentCore* consent, Clock* clock, ReferralOptions options)
    : ledger_(ledger),
      directory_(directory),
      directory_runner_(directory_runner),
      consent_(consent),
      clock_(clock),
      options_(std::move(options)),
      seen_(ledger) {
  submit_policy_.max_skew = update_policy_.max_skew = options_.max_clock_skew;
  submit_policy_.roles_by_payload_type["careloop.v1.ReferralManifest"] = {"sender"};
  update_policy_.roles_by_payload_type["careloop.v1.UpdateReferralStatus"] = {"sender", "receiver"};
  message_policy_.max_skew = options_.max_clock_skew;
  message_policy_.roles_by_payload_type["careloop.v1.ReferralMessage"] = {"sender", "receiver"};
}

// ---- Submit ----

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanSubmit(const trust::VerifiedEnvelope& v,
                                                           absl::string_view bytes,
                                                           const v1::SubmitReferralRequest& req,
                                                           v1::SubmitReferralResponse* resp) {
  const v1::Envelope& e = v.envelope;
  const auto& m = static_cast<const v1::ReferralManifest&>(*v.payload);
  const std::string& sender = e.sender_agency();
  RETURN_IF_ERROR(storage::ValidateToken(m.referral_id(), "referral id"));
  if (!options_.service_codes.contains(m.service_category())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown service category '", m.service_category(), "'"));
  }
  if (!consent::KnownPurposes().contains(m.purpose()))
    return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", m.purpose(), "'"));
  if (m.priority() == v1::PRIORITY_UNSPECIFIED)
    return absl::InvalidArgumentError("a referral has a priority");
  if (m.sections().empty()) return absl::InvalidArgumentError("a referral has at least a section");
  std::vector<v1::Section> sections(req.sections().begin(), req.sections().end());
  RETURN_IF_ERROR(VerifySections(m.sections(), sections, /*require_all=*/true, options_.limits));
  const std::string stream = ReferralStream(sender, m.referral_id());
  ASSIGN_OR_RETURN(uint64_t existing, ledger_->StreamVersion(stream));
  if (existing != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("referral ", Key(sender, m.referral_id()), " exists (another message id)"));
  }

  // Routing.
  std::vector<v1::RoutingCandidate> ranked;
  if (m.routing().has_criteria()) {
    ranked = Rank(m, {sender});
    if (ranked.empty() || !ranked.front().eligible()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no agency can take a ", m.service_category(), " referral for these criteria"));
    }
  } else {
    const std::string& to = m.routing().recipient_agency();
    RETURN_IF_ERROR(storage::ValidateAgencyId(to));
    std::optional<v1::AgencyRecord> a = directory_->Get(to);
    if (!a.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", to));
    v1::RoutingCandidate c;
    c.set_agency_id(to);
    std::vector<std::string> no;
    if (!a->active()) no.push_back("suspended");
    if (!Has(a->profile().services(), m.service_category()))
      no.push_back(absl::StrCat("does not offer ", m.service_category()));
    if (!Has(a->profile().roles(), "receiver")) no.push_back("does not receive referrals");
    if (!no.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("agency ", to, " cannot take it: ", absl::StrJoin(no, ", ")));
    }
    c.set_eligible(true);
    c.add_reasons("named by the sender");
    ranked.push_back(c);
  }
  const std::string recipient = ranked.front().agency_id();

  // The person, by the sender's own identifier; a new one is created in this
  // same append, so a refused referral leaves no subject behind.
  v1::ResolveSubjectRequest resolve;
  *resolve.add_identifiers() = m.subject();
  ASSIGN_OR_RETURN(consent::ConsentCore::PlannedSubject subject,
                   consent_->PlanResolve(resolve, sender));
  const bool new_subject = !subject.creation.events().empty();

  // Duplicates: one open referral per sender, subject and category.
  const std::string dedupe = DedupeStream(sender, subject.subject_id, m.service_category());
  ASSIGN_OR_RETURN(std::vector<v1::Event> dedupe_events, storage::ReadLastEvent(ledger_, dedupe));
  if (!dedupe_events.empty() && dedupe_events.back().header().type() == "DedupeOpened" &&
      req.force_reason().empty()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "referral ", dedupe_events.back().payload(),
        " is open for this subject and service; send anyway only with a force reason"));
  }

  v1::AppendRequest append = std::move(subject.creation);
  auto add = [&](std::string s, const char* type, std::string payload) {
    v1::EventInput* ev = append.add_events();
    ev->set_stream(std::move(s));
    ev->set_type(type);
    ev->set_subject(subject.subject_id);
    ev->set_payload(std::move(payload));
    return ev;
  };
  add(stream, "ReferralSubmitted", std::string(bytes))->add_agencies(sender);
  v1::ReferralSectionsStored stored;
  for (const v1::Section& s : sections) *stored.add_sections() = s;
  add(stream, "ReferralSections", stored.SerializeAsString())->add_agencies(sender);
  Route route{sender, Key(sender, m.referral_id()), subject.subject_id, new_subject, &m, ranked, 1,
              {}};
  ASSIGN_OR_RETURN(v1::ReferralRouted routed, AddRoute(route, &append));
  v1::EventInput* open = add(dedupe, "DedupeOpened", Key(sender, m.referral_id()));
  open->add_agencies(sender);
  Expect(&append, stream, 0);
  Expect(&append, dedupe,
         dedupe_events.empty() ? 0 : dedupe_events.back().header().stream_version());

  resp->set_referral(Key(sender, m.referral_id()));
  resp->set_recipient_agency(routed.recipient_agency());
  *resp->mutable_candidates() = routed.candidates();
  *resp->mutable_withheld() = routed.withheld();
  return append;
}

absl::StatusOr<v1::ReferralRouted> ReferralCore::AddRoute(const Route& route,
                                                          v1::AppendRequest* append) {
  const v1::ReferralManifest& m = *route.manifest;
  const std::string recipient = route.ranked.front().agency_id();
  std::vector<std::string> categories;
  for (const v1::SectionDigest& d : m.sections()) {
    if (!Has(categories, d.category())) categories.push_back(d.category());
  }
  // Consent, per section, for that recipient only: candidates not chosen see nothing.
  v1::CheckConsentResponse decision;
  if (route.new_subject) {
    // Nobody has recorded a consent for a person the hub has just met.
    decision.set_subject_id(route.subject_id);
    decision.set_recipient_agency(recipient);
    decision.set_purpose(m.purpose());
    for (const std::string& c : categories) {
      v1::CategoryDecision* d = decision.add_decisions();
      d->set_category(c);
      d->set_reason(absl::StrCat("no consent: subject ", route.subject_id, " is new to the hub"));
    }
  } else {
    v1::CheckConsentRequest check;
    check.set_subject_id(route.subject_id);
    check.set_recipient_agency(recipient);
    check.set_purpose(m.purpose());
    for (const std::string& c : categories) check.add_categories(c);
    ASSIGN_OR_RETURN(decision, consent_->Check(check, directory::kHubAgency));
  }
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const v1::CategoryDecision& d : decision.decisions()) by_category[d.category()] = &d;
  v1::ReferralRouted routed;
  routed.set_recipient_agency(recipient);
  routed.set_attempt(route.attempt);
  routed.set_subject_id(route.subject_id);
  *routed.mutable_candidates() = {route.ranked.begin(), route.ranked.end()};
  for (const v1::SectionDigest& d : m.sections()) {
    const v1::CategoryDecision* cd = by_category.at(d.category());
    if (cd->permit()) {
      v1::DisclosureRecorded rec;
      rec.add_categories(d.category());
      rec.set_record_type("referral");
      rec.set_record_id(route.key);
      rec.set_disclosing_agency(route.sender);
      rec.set_disclosure_id(absl::StrCat(route.key, "/", d.section_id(), "/", recipient));
      ASSIGN_OR_RETURN(v1::AppendRequest one, consent::DisclosureAppend(decision, rec));
      for (v1::EventInput& ev : *one.mutable_events()) *append->add_events() = std::move(ev);
    } else {
      v1::WithheldSection* w = routed.add_withheld();
      w->set_section_id(d.section_id());
      w->set_category(d.category());
      w->set_reason(cd->reason());
    }
  }
  const std::string stream = absl::StrCat("referral/", route.key);
  v1::EventInput* r = append->add_events();
  r->set_stream(stream);
  r->set_type("ReferralRouted");
  r->set_subject(route.subject_id);
  r->set_payload(routed.SerializeAsString());
  r->add_agencies(route.sender);
  r->add_agencies(recipient);
  for (const std::string& a : route.notify) {
    if (a != recipient && a != route.sender) r->add_agencies(a);
  }
  // The open-routing index the escalation reads.
  v1::EventInput* open = append->add_events();
  open->set_stream(kRoutingIndex);
  open->set_type("RoutingOpened");
  open->set_payload(route.key);
  // The decision's read versions (a revocation landing first fails this append).
  for (const v1::StreamVersion& sv : decision.read_versions())
    Expect(append, sv.stream(), sv.version());
  return routed;
}

absl::StatusOr<v1::SubmitReferralResponse> ReferralCore::Submit(
    const v1::SubmitReferralRequest& req) {
  absl::Status last;
  for (int attempt = 0; attempt < kDecisionAttempts; ++attempt) {
    v1::SubmitReferralResponse resp;
    absl::StatusOr<directory::Accepted> a = directory::AcceptSigned(
        req.envelope(), submit_policy_, *directory_, seen_, ledger_, clock_->Now(),
        [&](const trust::VerifiedEnvelope& v, absl::string_view b, absl::Time) {
          return PlanSubmit(v, b, req, &resp);
        });
    if (absl::IsAborted(a.status())) {
      // Something the decision read changed first (a revocation, a racing
      // duplicate): decide again.
      last = a.status();
      continue;
    }
    RETURN_IF_ERROR(a.status());
    if (a->last_seq == 0) {
      // A retry of an accepted envelope: answer from the ledger.
      v1::ReferralManifest m;
      m.ParseFromString(a->envelope.payload());
      ASSIGN_OR_RETURN(State st, Load(a->envelope.sender_agency(), m.referral_id()));
      resp.set_referral(Key(st.sender, st.referral_id));
      resp.set_recipient_agency(st.recipient);
      for (const auto& w : st.withheld) *resp.add_withheld() = w;
    }
    ASSIGN_OR_RETURN(*resp.mutable_receipt(), ledger_->GetReceipt(a->change_seq));
    return resp;
  }
  return last;
}

void ReferralCore::SubmitAsync(const v1::SubmitReferralRequest& req, SubmitDone done) {
  auto resp = std::make_shared<v1::SubmitReferralResponse>();
  absl::StatusOr<directory::PlannedChange> planned =
      directory::PlanSigned(req.envelope(), submit_policy_, *directory_, seen_, clock_->Now(),
                            [&](const trust::VerifiedEnvelope& v, absl::string_view b, absl::Time) {
                              return PlanSubmit(v, b, req, resp.get());
                            });
  if (absl::IsAborted(planned.status()) || (planned.ok() && !planned->append.has_value())) {
    done(std::nullopt);  // decide again, or answer a retry from the ledger: Submit does both
    return;
  }
  if (!planned.ok()) {
    done(planned.status());
    return;
  }
  v1::AppendRequest append = *std::move(planned->append);
  planned->append.reset();
  ledger_->AppendAsync(
      std::move(append), [this, bytes = req.envelope(), planned = *std::move(planned), resp,
                          done = std::move(done)](absl::StatusOr<v1::Commit> commit) {
        if (absl::IsFailedPrecondition(commit.status())) {
          done(std::nullopt);  // lost a race; Submit sorts it out where it may read and wait
          return;
        }
        absl::StatusOr<directory::Accepted> a =
            directory::SettleSigned(planned, bytes, commit, seen_);
        if (!a.ok()) {
          done(a.status());
          return;
        }
        absl::StatusOr<v1::Receipt> receipt = ledger_->GetReceipt(a->change_seq);
        if (!receipt.ok()) {
          done(receipt.status());
          return;
        }
        *resp->mutable_receipt() = *std::move(receipt);
        done(std::move(*resp));
      });
}

// ---- State ----

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
    if (type == "ReferralSubmitted") {
      ASSIGN_OR_RETURN(v1::Envelope env, Parse<v1::Envelope>(e, e.payload()));
      ASSIGN_OR_RETURN(st.manifest, Parse<v1::ReferralManifest>(e, env.payload()));
      st.manifest_envelope = e.payload();
      h.set_by_agency(env.sender_agency());
      h.set_by_user(env.actor().user_id());
    } else if (type == "ReferralSections") {
      ASSIGN_OR_RETURN(v1::ReferralSectionsStored s,
                       Parse<v1::ReferralSectionsStored>(e, e.payload()));
      st.sections.assign(s.sections().begin(), s.sections().end());
      continue;  // not a step anyone took
    } else if (type == "ReferralRouted") {
      ASSIGN_OR_RETURN(v1::ReferralRouted r, Parse<v1::ReferralRouted>(e, e.payload()));
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
    } else if (type == "ReferralDelivered") {
      ASSIGN_OR_RETURN(v1::ReferralDelivered d, Parse<v1::ReferralDelivered>(e, e.payload()));
      // Counts once, for the routing it was delivered for; a late or second
      // acknowledgement changes nothing.
      if (d.recipient_agency() != st.recipient || d.attempt() != st.attempt ||
          st.delivered_at != 0) {
        continue;
      }
      st.delivered_at = e.header().commit_time_unix_nanos();
      h.set_by_agency(d.recipient_agency());
    } else if (type == "ReferralDeadlineWarning") {
      ASSIGN_OR_RETURN(v1::ReferralDeadlineWarning w,
                       Parse<v1::ReferralDeadlineWarning>(e, e.payload()));
      if (w.attempt() == st.attempt) st.warned_attempt = w.attempt();
      h.set_recipient_agency(w.recipient_agency());
    } else if (type == "ReferralViewed") {
      if (e.payload() == st.recipient) st.viewed_at = e.header().commit_time_unix_nanos();
      h.set_by_agency(e.payload());
    } else if (type == "ReferralUnassigned") {
      ASSIGN_OR_RETURN(v1::ReferralUnassigned u, Parse<v1::ReferralUnassigned>(e, e.payload()));
      st.unassigned = true;
      h.mutable_reason()->set_code("unassigned");
      h.mutable_reason()->set_text(u.reason());
    } else if (type == "StatusChanged") {
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

absl::StatusOr<v1::ReferralView> ReferralCore::ViewFor(const State& st, absl::string_view caller,
                                                       bool with_detail) {
  const bool is_sender = caller == st.sender;
  if (!is_sender && !st.recipients.contains(std::string(caller))) {
    return absl::PermissionDeniedError(absl::StrCat("no referral ", Key(st.sender, st.referral_id),
                                                    " is visible to agency ", caller));
  }
  v1::ReferralView v;
  v.set_referral(Key(st.sender, st.referral_id));
  v.set_sender_agency(st.sender);
  v.set_recipient_agency(st.recipient);
  v.set_status(st.status);
  v.set_version(st.version);
  *v.mutable_outcome() = st.outcome;
  *v.mutable_manifest() = st.manifest;
  v.set_unassigned(st.unassigned);
  v.set_attempt(st.attempt);
  v.set_viewed_unix_nanos(st.viewed_at);
  v.set_delivered_unix_nanos(st.delivered_at);
  if (!with_detail) return v;
  RETURN_IF_ERROR(AddThread(st, caller, &v));
  v.set_manifest_envelope(st.manifest_envelope);
  for (const auto& h : st.history) *v.add_history() = h;
  if (is_sender) {
    v.set_subject_id(st.subject_id);
    for (const auto& s : st.sections) *v.add_sections() = s;
    for (const auto& w : st.withheld) *v.add_withheld() = w;
    return v;
  }
  // A recipient: consent is checked again now; nothing new is recorded.
  v1::CheckConsentRequest check;
  check.set_subject_id(st.subject_id);
  check.set_recipient_agency(std::string(caller));
  check.set_purpose(st.manifest.purpose());
  std::set<std::string> categories;
  for (const auto& s : st.sections) categories.insert(s.category());
  for (const auto& c : categories) check.add_categories(c);
  ASSIGN_OR_RETURN(v1::CheckConsentResponse decision,
                   consent_->Check(check, directory::kHubAgency));
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const auto& d : decision.decisions()) by_category[d.category()] = &d;
  std::set<std::string> withheld_at_routing;
  for (const auto& w : st.withheld) withheld_at_routing.insert(w.section_id());
  for (const v1::Section& s : st.sections) {
    const v1::CategoryDecision* d = by_category.at(s.category());
    if (d->permit() && !withheld_at_routing.contains(s.section_id())) {
      *v.add_sections() = s;
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
  absl::StatusOr<State> st = Load(referral.substr(0, slash), referral.substr(slash + 1));
  if (absl::IsNotFound(st.status())) {
    // Not an oracle for which referrals exist.
    return absl::PermissionDeniedError(
        absl::StrCat("no referral ", referral, " is visible to agency ", caller));
  }
  return st;
}

absl::StatusOr<v1::ReferralView> ReferralCore::View(absl::string_view referral,
                                                    absl::string_view caller) {
  ASSIGN_OR_RETURN(State st, LoadVisible(referral, caller));
  return ViewFor(st, caller, /*with_detail=*/true);
}

v1::EventInput ReferralCore::DeliveredEvent(absl::string_view referral,
                                            const v1::ReferralDelivered& delivered,
                                            absl::string_view subject_id) {
  const size_t slash = referral.find('/');
  v1::EventInput ev;
  ev.set_stream(ReferralStream(referral.substr(0, slash), referral.substr(slash + 1)));
  ev.set_type("ReferralDelivered");
  ev.set_subject(std::string(subject_id));
  ev.set_payload(delivered.SerializeAsString());
  ev.add_agencies(std::string(referral.substr(0, slash)));  // the sender is told
  return ev;
}

absl::StatusOr<v1::ReferralView> ReferralCore::Get(const v1::GetReferralRequest& req,
                                                   absl::string_view caller) {
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  absl::StatusOr<State> st = LoadVisible(req.referral(), caller);
  RETURN_IF_ERROR(st.status());
  ASSIGN_OR_RETURN(v1::ReferralView view, ViewFor(*st, caller, /*with_detail=*/true));
  if (caller == st->recipient && st->viewed_at == 0 && !st->unassigned) {
    // Viewed (not accepted): the sender learns the recipient opened it. Once
    // per recipient; losing a race to another change just means next time.
    v1::AppendRequest viewed;
    v1::EventInput* ev = viewed.add_events();
    ev->set_stream(ReferralStream(st->sender, st->referral_id));
    ev->set_type("ReferralViewed");
    ev->set_subject(st->subject_id);
    ev->set_payload(st->recipient);
    ev->add_agencies(st->sender);
    Expect(&viewed, ev->stream(), st->version);
    absl::StatusOr<v1::Commit> c = ledger_->Append(std::move(viewed));
    if (c.ok()) view.set_viewed_unix_nanos(c->commit_time_unix_nanos());
  }
  return view;
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
      if (e.header().type() == "ReferralRouted") streams.insert(e.header().stream());
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
                                                             absl::string_view caller) {
  return List(req, caller, /*sent=*/true);
}

absl::StatusOr<v1::ListReferralsResponse> ReferralCore::Inbox(const v1::ListReferralsRequest& req,
                                                              absl::string_view caller) {
  return List(req, caller, /*sent=*/false);
}

// ---- Status changes ----

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanUpdate(const trust::VerifiedEnvelope& v,
                                                           absl::string_view bytes) {
  const v1::Envelope& e = v.envelope;
  const auto& u = static_cast<const v1::UpdateReferralStatus&>(*v.payload);
  absl::StatusOr<State> loaded = Load(u.sender_agency(), u.referral_id());
  if (absl::IsNotFound(loaded.status())) {
    return absl::PermissionDeniedError(absl::StrCat("no referral ",
                                                    Key(u.sender_agency(), u.referral_id()),
                                                    " is visible to agency ", e.sender_agency()));
  }
  RETURN_IF_ERROR(loaded.status());
  const State& st = *loaded;
  Party party;
  if (e.sender_agency() == st.sender) {
    party = Party::kSender;
    if (e.actor().role() != "sender")
      return absl::PermissionDeniedError("the sender's changes are made in the sender role");
  } else if (e.sender_agency() == st.recipient) {
    party = Party::kRecipient;
    if (e.actor().role() != "receiver")
      return absl::PermissionDeniedError("the recipient's changes are made in the receiver role");
  } else {
    return absl::PermissionDeniedError(absl::StrCat("agency ", e.sender_agency(),
                                                    " is neither the sender nor the recipient of ",
                                                    Key(st.sender, st.referral_id)));
  }
  RETURN_IF_ERROR(CheckTransition(st.status, u.status(), party, u.reason()));
  if (u.status() == v1::TASK_COMPLETED && u.outcome().provided().empty())
    return absl::InvalidArgumentError("a completed referral says what was provided (outcome)");
  v1::AppendRequest append;
  const std::string stream = ReferralStream(st.sender, st.referral_id);
  v1::EventInput* ev = append.add_events();
  ev->set_stream(stream);
  ev->set_type("StatusChanged");
  ev->set_subject(st.subject_id);
  ev->set_payload(std::string(bytes));
  ev->add_agencies(st.sender);
  ev->add_agencies(st.recipient);
  Expect(&append, stream, st.version);
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
  if (entry != nullptr) {
    const std::string capacity = absl::StrCat("capacity/", st.recipient);
    v1::CapacitySlot slot;
    slot.set_service(entry->service());
    slot.set_referral(key);
    const bool holds = Has(entry->holders(), key);
    const char* type = nullptr;
    if (u.status() == v1::TASK_ACCEPTED) {
      if (directory::OpenSlots(*entry) <= 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("agency ", st.recipient, " has no open capacity for ", entry->service(),
                         "; decline with no-capacity, or report new capacity first"));
      }
      type = "SlotTaken";
      Expect(&append, capacity, recipient->capacity_version());
    } else if (IsTerminal(u.status()) && holds) {
      type = "SlotReleased";
    }
    if (type != nullptr) {
      v1::EventInput* ev2 = append.add_events();
      ev2->set_stream(capacity);
      ev2->set_type(type);
      ev2->set_payload(slot.SerializeAsString());
      ev2->add_agencies(st.recipient);
    }
  }
  const bool capacity_rejection =
      u.status() == v1::TASK_REJECTED && u.reason().code() == "no-capacity";
  if (u.status() == v1::TASK_ACCEPTED || (IsTerminal(u.status()) && !capacity_rejection)) {
    // Settled: escalation leaves it alone from now on.
    v1::EventInput* settled = append.add_events();
    settled->set_stream(kRoutingIndex);
    settled->set_type("RoutingSettled");
    settled->set_payload(key);
  }
  if (IsTerminal(u.status()) && !capacity_rejection) {
    // The referral no longer blocks a new one for the same need.
    const std::string dedupe =
        DedupeStream(st.sender, st.subject_id, st.manifest.service_category());
    ASSIGN_OR_RETURN(std::vector<v1::Event> d, storage::ReadLastEvent(ledger_, dedupe));
    if (!d.empty() && d.back().header().type() == "DedupeOpened" &&
        d.back().payload() == Key(st.sender, st.referral_id)) {
      v1::EventInput* close = append.add_events();
      close->set_stream(dedupe);
      close->set_type("DedupeClosed");
      close->set_payload(Key(st.sender, st.referral_id));
      close->add_agencies(st.sender);
      Expect(&append, dedupe, d.back().header().stream_version());
    }
  }
  return append;
}

absl::StatusOr<v1::Receipt> ReferralCore::UpdateStatus(absl::string_view bytes) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<directory::Accepted> a =
        directory::AcceptSigned(bytes, update_policy_, *directory_, seen_, ledger_, clock_->Now(),
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

// ---- Threads ----

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanMessage(const trust::VerifiedEnvelope& v,
                                                            absl::string_view bytes,
                                                            const v1::PostMessageRequest& req,
                                                            v1::PostMessageResponse* resp) {
  const v1::Envelope& e = v.envelope;
  const auto& msg = static_cast<const v1::ReferralMessage&>(*v.payload);
  absl::StatusOr<State> loaded = Load(msg.sender_agency(), msg.referral_id());
  if (absl::IsNotFound(loaded.status())) {
    return absl::PermissionDeniedError(absl::StrCat("no referral ",
                                                    Key(msg.sender_agency(), msg.referral_id()),
                                                    " is visible to agency ", e.sender_agency()));
  }
  RETURN_IF_ERROR(loaded.status());
  const State& st = *loaded;
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
    if (!Has(categories, d.category())) categories.push_back(d.category());
  }
  v1::CheckConsentRequest check;
  check.set_subject_id(st.subject_id);
  check.set_recipient_agency(to);
  check.set_purpose(st.manifest.purpose());
  for (const std::string& c : categories) check.add_categories(c);
  ASSIGN_OR_RETURN(v1::CheckConsentResponse decision,
                   consent_->Check(check, directory::kHubAgency));
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const auto& d : decision.decisions()) by_category[d.category()] = &d;
  const std::string key = Key(st.sender, st.referral_id);
  const std::string thread = absl::StrCat("thread/", key);
  v1::AppendRequest append;
  v1::EventInput* posted_env = append.add_events();
  posted_env->set_stream(thread);
  posted_env->set_type("ThreadMessage");
  posted_env->set_subject(st.subject_id);
  posted_env->set_payload(std::string(bytes));
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
    rec.set_disclosure_id(absl::StrCat(key, "/", e.message_id(), "/", d.section_id()));
    ASSIGN_OR_RETURN(v1::AppendRequest one, consent::DisclosureAppend(decision, rec));
    for (v1::EventInput& ev : *one.mutable_events()) *append.add_events() = std::move(ev);
  }
  v1::EventInput* hub = append.add_events();
  hub->set_stream(thread);
  hub->set_type("ThreadPosted");
  hub->set_subject(st.subject_id);
  hub->set_payload(posted.SerializeAsString());
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
    absl::StatusOr<directory::Accepted> a = directory::AcceptSigned(
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
                                     v1::ReferralView* view) {
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadWholeStream(ledger_, absl::StrCat("thread/", view->referral())));
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
      ASSIGN_OR_RETURN(v1::CheckConsentResponse now, consent_->Check(check, directory::kHubAgency));
      for (const auto& d : now.decisions()) permitted_now[d.category()] = d.permit();
    }
    for (const v1::Section& sec : posted.sections()) {
      if (withheld.contains(sec.section_id())) continue;
      if (permitted_now[sec.category()]) {
        *t->add_sections() = sec;
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

// ---- Routing and escalation ----

std::vector<v1::RoutingCandidate> ReferralCore::Rank(const v1::ReferralManifest& m,
                                                     const std::set<std::string>& exclude) {
  std::map<std::string, int64_t> open;
  std::vector<v1::AgencyRecord> agencies;
  for (v1::AgencyRecord& a : directory_->All()) {
    if (exclude.contains(a.agency_id())) continue;
    for (const v1::CapacityEntry& c : a.capacity()) {
      if (c.service() == m.service_category()) open[a.agency_id()] = directory::OpenSlots(c);
    }
    agencies.push_back(std::move(a));
  }
  return RankCandidates(agencies, m.service_category(), m.routing().criteria(), open);
}

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
    v1::EventInput* ev = append.add_events();
    ev->set_stream(stream);
    ev->set_type("ReferralUnassigned");
    ev->set_subject(st.subject_id);
    ev->set_payload(u.SerializeAsString());
    ev->add_agencies(st.sender);
    v1::EventInput* settled = append.add_events();
    settled->set_stream(kRoutingIndex);
    settled->set_type("RoutingSettled");
    settled->set_payload(key);
    const std::string dedupe =
        DedupeStream(st.sender, st.subject_id, st.manifest.service_category());
    ASSIGN_OR_RETURN(std::vector<v1::Event> d, storage::ReadLastEvent(ledger_, dedupe));
    if (!d.empty() && d.back().header().type() == "DedupeOpened" && d.back().payload() == key) {
      v1::EventInput* close = append.add_events();
      close->set_stream(dedupe);
      close->set_type("DedupeClosed");
      close->set_payload(key);
      close->add_agencies(st.sender);
      Expect(&append, dedupe, d.back().header().stream_version());
    }
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
    if (e.header().type() == "RoutingOpened") open_.insert(e.payload());
    if (e.header().type() == "RoutingSettled") open_.erase(e.payload());
    routing_version_ = e.header().stream_version();
  }
  const std::set<std::string> open = open_;
  const absl::Time now = clock_->Now();
  int moved = 0;
  for (const std::string& key : open) {
    const size_t slash = key.find('/');
    ASSIGN_OR_RETURN(State st, Load(key.substr(0, slash), key.substr(slash + 1)));
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
      v1::EventInput* ev = warn.add_events();
      ev->set_stream(ReferralStream(st.sender, st.referral_id));
      ev->set_type("ReferralDeadlineWarning");
      ev->set_subject(st.subject_id);
      ev->set_payload(w.SerializeAsString());
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
