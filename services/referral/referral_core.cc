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
  std::vector<std::string> categories;
  for (const v1::SectionDigest& d : m.sections()) {
    if (!Has(categories, d.category())) categories.push_back(d.category());
  }
  const std::string stream = ReferralStream(sender, m.referral_id());
  ASSIGN_OR_RETURN(std::vector<v1::Event> existing,
                   storage::ReadWholeStream(ledger_, stream, /*include_payloads=*/false));
  if (!existing.empty()) {
    return absl::AlreadyExistsError(
        absl::StrCat("referral ", Key(sender, m.referral_id()), " exists (another message id)"));
  }

  // Routing.
  std::vector<v1::RoutingCandidate> ranked;
  if (m.routing().has_criteria()) {
    std::map<std::string, int64_t> open;
    for (const v1::AgencyRecord& a : directory_->All()) {
      for (const v1::CapacityEntry& c : a.capacity()) {
        if (c.service() == m.service_category()) open[a.agency_id()] = directory::OpenSlots(c);
      }
    }
    ranked = RankCandidates(directory_->All(), m.service_category(), m.routing().criteria(), open);
    ranked.erase(
        std::remove_if(ranked.begin(), ranked.end(),
                       [&](const v1::RoutingCandidate& c) { return c.agency_id() == sender; }),
        ranked.end());
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
  ASSIGN_OR_RETURN(std::vector<v1::Event> dedupe_events, storage::ReadWholeStream(ledger_, dedupe));
  if (!dedupe_events.empty() && dedupe_events.back().header().type() == "DedupeOpened" &&
      req.force_reason().empty()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "referral ", dedupe_events.back().payload(),
        " is open for this subject and service; send anyway only with a force reason"));
  }

  // Consent, per section, for that recipient only: candidates not chosen see nothing.
  v1::CheckConsentRequest check;
  check.set_subject_id(subject.subject_id);
  check.set_recipient_agency(recipient);
  check.set_purpose(m.purpose());
  for (const std::string& c : categories) check.add_categories(c);
  v1::CheckConsentResponse decision;
  if (new_subject) {
    // Nobody has recorded a consent for a person the hub has just met.
    decision.set_subject_id(subject.subject_id);
    decision.set_recipient_agency(recipient);
    decision.set_purpose(m.purpose());
    for (const std::string& c : categories) {
      v1::CategoryDecision* d = decision.add_decisions();
      d->set_category(c);
      d->set_reason(absl::StrCat("no consent: subject ", subject.subject_id, " is new to the hub"));
    }
  } else {
    ASSIGN_OR_RETURN(decision, consent_->Check(check, directory::kHubAgency));
  }
  std::map<std::string, const v1::CategoryDecision*> by_category;
  for (const v1::CategoryDecision& d : decision.decisions()) by_category[d.category()] = &d;

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
  v1::ReferralRouted routed;
  routed.set_recipient_agency(recipient);
  routed.set_attempt(1);
  routed.set_subject_id(subject.subject_id);
  *routed.mutable_candidates() = {ranked.begin(), ranked.end()};
  for (const v1::SectionDigest& d : m.sections()) {
    const v1::CategoryDecision* cd = by_category.at(d.category());
    if (cd->permit()) {
      v1::DisclosureRecorded rec;
      rec.add_categories(d.category());
      rec.set_record_type("referral");
      rec.set_record_id(Key(sender, m.referral_id()));
      rec.set_disclosing_agency(sender);
      rec.set_disclosure_id(absl::StrCat(Key(sender, m.referral_id()), "/", d.section_id()));
      ASSIGN_OR_RETURN(v1::AppendRequest one, consent::DisclosureAppend(decision, rec));
      for (v1::EventInput& ev : *one.mutable_events()) *append.add_events() = std::move(ev);
    } else {
      v1::WithheldSection* w = routed.add_withheld();
      w->set_section_id(d.section_id());
      w->set_category(d.category());
      w->set_reason(cd->reason());
    }
  }
  v1::EventInput* r = add(stream, "ReferralRouted", routed.SerializeAsString());
  r->add_agencies(sender);
  r->add_agencies(recipient);
  v1::EventInput* open = add(dedupe, "DedupeOpened", Key(sender, m.referral_id()));
  open->add_agencies(sender);
  Expect(&append, stream, 0);
  Expect(&append, dedupe,
         dedupe_events.empty() ? 0 : dedupe_events.back().header().stream_version());
  // The decision's read versions (a revocation landing first fails this append).
  for (const v1::StreamVersion& sv : decision.read_versions())
    Expect(&append, sv.stream(), sv.version());

  resp->set_referral(Key(sender, m.referral_id()));
  resp->set_recipient_agency(recipient);
  *resp->mutable_candidates() = routed.candidates();
  *resp->mutable_withheld() = routed.withheld();
  return append;
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
      h.set_recipient_agency(r.recipient_agency());
    } else if (type == "StatusChanged") {
      ASSIGN_OR_RETURN(v1::Envelope env, Parse<v1::Envelope>(e, e.payload()));
      ASSIGN_OR_RETURN(v1::UpdateReferralStatus u,
                       Parse<v1::UpdateReferralStatus>(e, env.payload()));
      st.status = u.status();
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
  if (!with_detail) return v;
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
    w->set_reason(withheld_at_routing.contains(s.section_id())
                      ? "not permitted when the referral was routed"
                      : d->reason());
  }
  return v;
}

absl::StatusOr<v1::ReferralView> ReferralCore::Get(const v1::GetReferralRequest& req,
                                                   absl::string_view caller) {
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  const size_t slash = req.referral().find('/');
  if (slash == std::string::npos)
    return absl::InvalidArgumentError("a referral is named <sender>/<referral id>");
  absl::StatusOr<State> st =
      Load(req.referral().substr(0, slash), req.referral().substr(slash + 1));
  if (absl::IsNotFound(st.status())) {
    // Not an oracle for which referrals exist.
    return absl::PermissionDeniedError(
        absl::StrCat("no referral ", req.referral(), " is visible to agency ", caller));
  }
  RETURN_IF_ERROR(st.status());
  return ViewFor(*st, caller, /*with_detail=*/true);
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
  if (IsTerminal(u.status())) {
    // The referral no longer blocks a new one for the same need.
    const std::string dedupe =
        DedupeStream(st.sender, st.subject_id, st.manifest.service_category());
    ASSIGN_OR_RETURN(std::vector<v1::Event> d,
                     storage::ReadWholeStream(ledger_, dedupe, /*include_payloads=*/true));
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
    return ledger_->GetReceipt(a->change_seq);
  }
}

}  // namespace careloop::referral
