// PreviewDisclosure: a sending agency asks, before it sends, what consent
// would let a recipient see of a person. The answer is the decision the hub
// would take at disclosure (Decide), per category, without the consent ids;
// it discloses nothing and writes only the record of the read.
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "services/consent/consent_core.h"
#include "services/consent/internal.h"
#include "storage/ledger.h"

namespace careloop::consent {

absl::StatusOr<v1::PreviewDisclosureResponse> ConsentCore::PreviewDisclosure(
    const v1::PreviewDisclosureRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "PreviewDisclosure"));
  RETURN_IF_ERROR(ValidateIdentifier(req.subject()));
  // A foreign, shared, unknown-to-the-caller or unrelated person: one answer.
  const absl::Status refused = absl::PermissionDeniedError(
      "a preview names a person by an identifier of the caller's own authority, with whom it "
      "has a relationship");
  if (!OwnIdentifier(caller, req.subject())) return refused;
  for (const std::string& category : req.categories()) {
    if (!options_.categories.contains(category)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", category, "'"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<v1::Event> claimed,
                   storage::ReadWholeStream(ledger_, IdentifierStream(req.subject())));
  v1::PreviewDisclosureResponse resp;
  if (claimed.empty()) {
    // The hub does not know the person yet: no consent, nothing shared.
    for (const std::string& category : req.categories()) {
      v1::CategoryDecision* d = resp.add_decisions();
      d->set_category(category);
      d->set_reason("no consent of this person is on record yet");
    }
  } else {
    ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(claimed.front()));
    absl::StatusOr<SubjectSet> set = RelatedSubjects(caller, ref.subject_id());
    if (absl::IsPermissionDenied(set.status())) return refused;
    RETURN_IF_ERROR(set.status());
    v1::CheckConsentRequest check;
    check.set_subject_id(set->survivor);
    check.set_recipient_agency(req.recipient_agency());
    check.set_purpose(req.purpose());
    *check.mutable_categories() = req.categories();
    ASSIGN_OR_RETURN(v1::CheckConsentResponse decided, Decide(check));
    for (const v1::CategoryDecision& d : decided.decisions()) {
      v1::CategoryDecision* out = resp.add_decisions();
      out->set_category(d.category());
      out->set_permit(d.permit());
      out->set_reason(d.reason());
    }
  }
  RETURN_IF_ERROR(RecordRead(who, "ConsentService.PreviewDisclosure", req));
  return resp;
}

}  // namespace careloop::consent
