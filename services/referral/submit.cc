// Submission and routing: verify, resolve the subject, refuse duplicates,
// route, decide consent per section, and append it all at once.
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

absl::Status ReferralCore::ValidateManifest(const v1::ReferralManifest& m) const {
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
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::RoutingCandidate>> ReferralCore::FirstRoute(
    const v1::ReferralManifest& m, const std::string& sender) {
  std::vector<v1::RoutingCandidate> ranked;
  if (m.routing().has_criteria()) {
    ranked = Rank(m, {sender});
    if (ranked.empty() || !ranked.front().eligible()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no agency can take a ", m.service_category(), " referral for these criteria"));
    }
    return ranked;
  }
  const std::string& to = m.routing().recipient_agency();
  RETURN_IF_ERROR(storage::ValidateAgencyId(to));
  std::optional<v1::AgencyRecord> a = directory_->Get(to);
  if (!a.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", to));
  const std::vector<std::string> no = CannotReceive(*a, m.service_category());
  if (!no.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agency ", to, " cannot take it: ", absl::StrJoin(no, ", ")));
  }
  v1::RoutingCandidate c;
  c.set_agency_id(to);
  c.set_eligible(true);
  c.add_reasons("named by the sender");
  ranked.push_back(c);
  return ranked;
}

absl::StatusOr<v1::AppendRequest> ReferralCore::PlanSubmit(const trust::VerifiedEnvelope& v,
                                                           absl::string_view bytes,
                                                           const v1::SubmitReferralRequest& req,
                                                           v1::SubmitReferralResponse* resp) {
  const v1::Envelope& e = v.envelope;
  const auto& m = static_cast<const v1::ReferralManifest&>(*v.payload);
  const std::string& sender = e.sender_agency();
  RETURN_IF_ERROR(ValidateManifest(m));
  std::vector<v1::Section> sections(req.sections().begin(), req.sections().end());
  RETURN_IF_ERROR(VerifySections(m.sections(), sections, /*require_all=*/true, options_.limits));
  const std::string stream = ReferralStream(sender, m.referral_id());
  ASSIGN_OR_RETURN(uint64_t existing, ledger_->StreamVersion(stream));
  if (existing != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("referral ", Key(sender, m.referral_id()), " exists (another message id)"));
  }
  ASSIGN_OR_RETURN(std::vector<v1::RoutingCandidate> ranked, FirstRoute(m, sender));

  // The person, by the sender's own identifier; a new one is created in this
  // same append, so a refused referral leaves no subject behind.
  v1::ResolveSubjectRequest resolve;
  *resolve.add_identifiers() = m.subject();
  ASSIGN_OR_RETURN(consent::PlannedSubject subject, consent_->PlanResolve(resolve, sender));
  const bool new_subject = !subject.creation.events().empty();

  // Duplicates: one open referral per sender, subject and category.
  const std::string dedupe = DedupeStream(sender, subject.subject_id, m.service_category());
  ASSIGN_OR_RETURN(std::vector<v1::Event> dedupe_events, storage::ReadLastEvent(ledger_, dedupe));
  if (!dedupe_events.empty() &&
      dedupe_events.back().header().type() == names::event::kDedupeOpened &&
      req.force_reason().empty()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "referral ", dedupe_events.back().payload(),
        " is open for this subject and service; send anyway only with a force reason"));
  }

  v1::AppendRequest append = std::move(subject.creation);
  trust::AddEvent(&append, stream, names::event::kReferralSubmitted, subject.subject_id,
                  std::string(bytes))
      ->add_agencies(sender);
  v1::ReferralSectionsStored stored;
  for (const v1::Section& s : sections) *stored.add_sections() = s;
  trust::AddEvent(&append, stream, names::event::kReferralSections, subject.subject_id,
                  stored.SerializeAsString())
      ->add_agencies(sender);
  Route route{sender, Key(sender, m.referral_id()), subject.subject_id, new_subject, &m, ranked, 1,
              {},     v.envelope.actor().user_id()};
  ASSIGN_OR_RETURN(v1::ReferralRouted routed, AddRoute(route, &append));
  trust::AddEvent(&append, dedupe, names::event::kDedupeOpened, subject.subject_id,
                  Key(sender, m.referral_id()))
      ->add_agencies(sender);
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
    if (!Contains(categories, d.category())) categories.push_back(d.category());
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
    ASSIGN_OR_RETURN(decision, consent_->Decide(check));
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
      rec.set_disclosing_actor(route.actor);
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
  const std::string stream = names::stream::Referral(route.key);
  v1::EventInput* r = trust::AddEvent(append, stream, names::event::kReferralRouted,
                                      route.subject_id, routed.SerializeAsString());
  r->add_agencies(route.sender);
  r->add_agencies(recipient);
  for (const std::string& a : route.notify) {
    if (a != recipient && a != route.sender) r->add_agencies(a);
  }
  // The open-routing index the escalation reads.
  trust::AddEvent(append, kRoutingIndex, names::event::kRoutingOpened, {}, route.key);
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
    absl::StatusOr<trust::Accepted> a = trust::AcceptSigned(
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
  absl::StatusOr<trust::PlannedChange> planned =
      trust::PlanSigned(req.envelope(), submit_policy_, *directory_, seen_, clock_->Now(),
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
                          done = std::move(done)](const absl::StatusOr<v1::Commit>& commit) {
        if (absl::IsFailedPrecondition(commit.status())) {
          done(std::nullopt);  // lost a race; Submit sorts it out where it may read and wait
          return;
        }
        absl::StatusOr<trust::Accepted> a = trust::SettleSigned(planned, bytes, commit, seen_);
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

}  // namespace careloop::referral
