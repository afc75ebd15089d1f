// Break-glass: emergency access with its reason and period, the review
// list, and compliance's review.
#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/sha256.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/consent/consent_core.h"
#include "services/consent/internal.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::consent {

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanBreakGlass(const trust::VerifiedEnvelope& v,
                                                              absl::string_view bytes,
                                                              std::string* assigned_id) {
  const auto& p = static_cast<const v1::BreakGlass&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  std::optional<v1::AgencyRecord> agency = directory_->Get(e.sender_agency());
  if (!agency.has_value() || !Contains(agency->profile().roles(), kEmergencyRole)) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " does not have the emergency role"));
  }
  if (p.reason().empty()) return absl::InvalidArgumentError("a break-glass states its reason");
  if (!KnownPurposes().contains(p.purpose()))
    return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", p.purpose(), "'"));
  if (p.categories().empty() || p.categories_size() > kMaxCategories)
    return absl::InvalidArgumentError("a break-glass names 1 to 32 categories");
  for (const std::string& c : p.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
  }
  absl::Duration d = p.duration_seconds() == 0 ? options_.default_break_glass
                                               : absl::Seconds(p.duration_seconds());
  if (d <= absl::ZeroDuration() || d > options_.max_break_glass) {
    return absl::InvalidArgumentError(absl::StrCat("a break-glass lasts at most ",
                                                   absl::FormatDuration(options_.max_break_glass)));
  }
  ASSIGN_OR_RETURN(SubjectSet set, Subjects(p.subject_id()));
  *assigned_id = BreakGlassIdFor(e.sender_agency(), e.message_id());
  const absl::Time now = clock_->Now();
  v1::BreakGlassRecord rec;
  rec.set_break_glass_id(*assigned_id);
  rec.set_subject_id(set.survivor);
  rec.set_agency_id(e.sender_agency());
  rec.set_user_id(e.actor().user_id());
  *rec.mutable_categories() = p.categories();
  rec.set_purpose(p.purpose());
  rec.set_reason(p.reason());
  rec.set_from_unix_nanos(absl::ToUnixNanos(now));
  rec.set_until_unix_nanos(absl::ToUnixNanos(now + d));
  std::vector<std::string> compliance;
  for (const v1::AgencyRecord& a : directory_->All()) {
    if (a.active() && Contains(a.profile().roles(), kComplianceRole))
      compliance.push_back(a.agency_id());
  }
  v1::AppendRequest req;
  const std::string detail = names::stream::BreakGlass(*assigned_id);
  // The envelope, in the break-glass's own stream (a review appends to it).
  AddEvent(&req, detail, names::event::kBreakGlass, set.survivor, std::string(bytes));
  Expect(&req, detail, 0);
  // What decisions read: in the subject's consent stream.
  v1::EventInput* invoked =
      AddEvent(&req, ConsentStream(set.survivor), names::event::kBreakGlassInvoked, set.survivor,
               rec.SerializeAsString());
  v1::BreakGlassListed listed;
  listed.set_break_glass_id(*assigned_id);
  listed.set_subject_id(set.survivor);
  listed.set_agency_id(e.sender_agency());
  v1::EventInput* list = AddEvent(&req, kBreakGlassList, names::event::kBreakGlassListed,
                                  set.survivor, listed.SerializeAsString());
  // Each use concerns every compliance agency: that is how they are told.
  for (const std::string& c : compliance) {
    invoked->add_agencies(c);
    list->add_agencies(c);
  }
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanReview(const trust::VerifiedEnvelope& v,
                                                          absl::string_view bytes) {
  const auto& p = static_cast<const v1::ReviewBreakGlass&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  if (!IsCompliance(e.sender_agency())) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " is not a compliance agency"));
  }
  RETURN_IF_ERROR(storage::ValidateToken(p.break_glass_id(), "break-glass id"));
  const std::string detail = names::stream::BreakGlass(p.break_glass_id());
  ASSIGN_OR_RETURN(std::vector<v1::Event> events, storage::ReadWholeStream(ledger_, detail));
  if (events.empty())
    return absl::NotFoundError(absl::StrCat("no break-glass ", p.break_glass_id()));
  if (events.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("break-glass ", p.break_glass_id(), " is already reviewed"));
  }
  v1::Envelope invoked;
  ASSIGN_OR_RETURN(v1::BreakGlass bg, SignedPayload<v1::BreakGlass>(events.front(), &invoked));
  const std::string subject = events.front().header().subject();
  v1::AppendRequest req;
  AddEvent(&req, detail, names::event::kReviewBreakGlass, subject, std::string(bytes))
      ->add_agencies(invoked.sender_agency());
  Expect(&req, detail, 1);
  v1::BreakGlassListed listed;
  listed.set_break_glass_id(p.break_glass_id());
  listed.set_subject_id(subject);
  listed.set_agency_id(invoked.sender_agency());
  listed.set_reviewed(true);
  AddEvent(&req, kBreakGlassList, names::event::kBreakGlassListed, subject,
           listed.SerializeAsString());
  return req;
}

absl::StatusOr<v1::ListBreakGlassResponse> ConsentCore::ListBreakGlass(
    const v1::ListBreakGlassRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "ListBreakGlass"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> listed,
                   storage::ReadWholeStream(ledger_, kBreakGlassList));
  std::map<std::string, bool> reviewed;
  std::vector<std::string> order;
  for (const v1::Event& e : listed) {
    ASSIGN_OR_RETURN(v1::BreakGlassListed l, HubPayload<v1::BreakGlassListed>(e));
    if (!reviewed.contains(l.break_glass_id())) order.push_back(l.break_glass_id());
    reviewed[l.break_glass_id()] |= l.reviewed();
  }
  v1::ListBreakGlassResponse resp;
  for (const std::string& id : order) {
    if (reviewed[id] && !req.include_reviewed()) continue;
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, names::stream::BreakGlass(id)));
    if (events.empty()) return absl::DataLossError(absl::StrCat("break-glass ", id, " is missing"));
    v1::Envelope env;
    ASSIGN_OR_RETURN(v1::BreakGlass bg, SignedPayload<v1::BreakGlass>(events.front(), &env));
    v1::BreakGlassRecord* r = resp.add_records();
    r->set_break_glass_id(id);
    r->set_subject_id(events.front().header().subject());
    r->set_agency_id(env.sender_agency());
    r->set_user_id(env.actor().user_id());
    *r->mutable_categories() = bg.categories();
    r->set_purpose(bg.purpose());
    r->set_reason(bg.reason());
    const int64_t from = events.front().header().commit_time_unix_nanos();
    r->set_from_unix_nanos(from);
    r->set_seq(events.front().header().seq());
    if (events.size() > 1) {
      v1::Envelope review_env;
      ASSIGN_OR_RETURN(v1::ReviewBreakGlass review,
                       SignedPayload<v1::ReviewBreakGlass>(events[1], &review_env));
      r->set_reviewed(true);
      r->set_appropriate(review.appropriate());
      r->set_reviewed_by_agency(review_env.sender_agency());
      r->set_reviewed_by_user(review_env.actor().user_id());
    }
  }
  // The window comes from the invocation record in the consent stream.
  for (v1::BreakGlassRecord& r : *resp.mutable_records()) {
    ASSIGN_OR_RETURN(SubjectState st, Load(r.subject_id(), false));
    for (const v1::BreakGlassRecord& b : st.break_glass) {
      if (b.break_glass_id() != r.break_glass_id()) continue;
      r.set_from_unix_nanos(b.from_unix_nanos());
      r.set_until_unix_nanos(b.until_unix_nanos());
    }
  }
  RETURN_IF_ERROR(RecordRead(who, "ConsentService.ListBreakGlass", req));
  return resp;
}

}  // namespace careloop::consent
