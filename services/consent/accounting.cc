// The disclosure report and the HIPAA §164.528 accounting.
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

absl::StatusOr<v1::DisclosureReportResponse> ConsentCore::Report(
    const v1::DisclosureReportRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "DisclosureReport"));
  ASSIGN_OR_RETURN(v1::DisclosureReportResponse resp, Accounting(req));
  RETURN_IF_ERROR(RecordRead(who, "ConsentService.DisclosureReport", req, resp.subject_id(),
                             "disclosure-report"));
  return resp;
}

absl::StatusOr<v1::DisclosureReportResponse> ConsentCore::Accounting(
    const v1::DisclosureReportRequest& req) {
  const absl::Time to =
      req.to_unix_nanos() != 0 ? absl::FromUnixNanos(req.to_unix_nanos()) : clock_->Now();
  const absl::Time from =
      req.from_unix_nanos() != 0 ? absl::FromUnixNanos(req.from_unix_nanos()) : SixYearsBefore(to);
  if (from > to) return absl::InvalidArgumentError("the report's period ends before it starts");
  ASSIGN_OR_RETURN(SubjectState st, Load(req.subject_id(), /*with_disclosures=*/true));
  v1::DisclosureReportResponse resp;
  resp.set_subject_id(st.subjects.survivor);
  for (const std::string& m : st.subjects.members) resp.add_subject_ids(m);
  resp.set_from_unix_nanos(absl::ToUnixNanos(from));
  resp.set_to_unix_nanos(absl::ToUnixNanos(to));
  resp.set_hipaa_accounting(req.hipaa_accounting());
  std::map<std::pair<std::string, std::string>, int> summary;  // (recipient, purpose) -> entry
  for (const auto& [seq, d] : st.disclosures) {
    const absl::Time t = absl::FromUnixNanos(d.disclosed_unix_nanos());
    if (t < from || t > to) continue;
    if (req.hipaa_accounting() && IsExcludedFromAccounting(d, st)) continue;
    if (req.summarize()) {
      auto [it, fresh] =
          summary.try_emplace({d.recipient_agency(), d.purpose()}, resp.entries_size());
      if (!fresh) {
        v1::DisclosureEntry* e = resp.mutable_entries(it->second);
        e->set_count(e->count() + 1);
        e->set_last_unix_nanos(d.disclosed_unix_nanos());
        continue;
      }
    }
    v1::DisclosureEntry* e = resp.add_entries();
    e->set_seq(seq);
    e->set_disclosed_unix_nanos(d.disclosed_unix_nanos());
    e->set_recipient_agency(d.recipient_agency());
    if (std::optional<v1::AgencyRecord> a = directory_->Get(d.recipient_agency())) {
      e->set_recipient_name(a->profile().display_name());
      *e->mutable_recipient_address() = a->profile().address();
      if (a->profile().address().confidential()) {
        // A confidential address (a shelter) is not printed on a report.
        e->mutable_recipient_address()->Clear();
        e->mutable_recipient_address()->set_confidential(true);
      }
    }
    *e->mutable_categories() = d.categories();
    e->set_record_type(d.record_type());
    e->set_purpose(d.purpose());
    *e->mutable_consent_ids() = d.consent_ids();
    e->set_break_glass_id(d.break_glass_id());
    e->set_authority(
        d.authority() == "consent" ? absl::StrCat("consent ", absl::StrJoin(d.consent_ids(), ", "))
        : d.authority() == "break-glass" ? absl::StrCat("break-glass ", d.break_glass_id())
                                         : d.authority());
    e->set_subject_id(d.subject_id());
    e->set_count(1);
    e->set_last_unix_nanos(d.disclosed_unix_nanos());
  }
  return resp;
}

bool ConsentCore::IsExcludedFromAccounting(const v1::DisclosureRecorded& d,
                                           const SubjectState& st) const {
  // 45 CFR §164.528(a)(1)(i): treatment, payment and health care operations.
  if (TreatmentPaymentOperations().contains(d.purpose())) return true;
  // (ii) to the individual.
  if (d.purpose() == "subject-request") return true;
  // (iv) pursuant to an authorization under §164.508.
  for (const std::string& id : d.consent_ids()) {
    auto it = st.consents.find(id);
    if (it != st.consents.end() && it->second.record.consent().hipaa_authorization()) return true;
  }
  return false;
}

}  // namespace careloop::consent
