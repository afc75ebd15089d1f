#include "services/consent/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace careloop::consent {
namespace {

std::string Date(int64_t nanos) {
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::FromUnixNanos(nanos), absl::UTCTimeZone());
}

std::string Day(int64_t nanos) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixNanos(nanos), absl::UTCTimeZone());
}

std::string Address(const v1::PostalAddress& a) {
  if (a.confidential()) return "(confidential address)";
  std::vector<std::string> parts(a.lines().begin(), a.lines().end());
  std::string city = absl::StrJoin({a.city(), a.state(), a.postal_code()}, " ");
  if (city.find_first_not_of(' ') != std::string::npos) parts.push_back(city);
  if (!a.country().empty()) parts.push_back(a.country());
  return absl::StrJoin(parts, ", ");
}

std::string Csv(absl::string_view field) {
  if (field.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(field);
  return absl::StrCat("\"", absl::StrReplaceAll(field, {{"\"", "\"\""}}), "\"");
}

}  // namespace

std::string ReportCsv(const v1::DisclosureReportResponse& report) {
  std::string out =
      "date,recipient_agency,recipient_name,recipient_address,categories,record_type,purpose,"
      "authority,count,last_date,seq,recorded_under_subject\r\n";
  for (const v1::DisclosureEntry& e : report.entries()) {
    std::vector<std::string> row = {Date(e.disclosed_unix_nanos()),
                                    e.recipient_agency(),
                                    e.recipient_name(),
                                    Address(e.recipient_address()),
                                    absl::StrJoin(e.categories(), ";"),
                                    e.record_type(),
                                    e.purpose(),
                                    e.authority(),
                                    absl::StrCat(e.count()),
                                    Date(e.last_unix_nanos()),
                                    absl::StrCat(e.seq()),
                                    e.subject_id()};
    for (std::string& f : row) f = Csv(f);
    absl::StrAppend(&out, absl::StrJoin(row, ","), "\r\n");
  }
  return out;
}

std::string ReportText(const v1::DisclosureReportResponse& report) {
  std::string out =
      absl::StrCat(report.hipaa_accounting() ? "Accounting of disclosures (45 CFR 164.528)"
                                             : "Disclosure report",
                   "\nSubject: ", report.subject_id());
  if (report.subject_ids_size() > 1) {
    absl::StrAppend(
        &out, " (also recorded as ",
        absl::StrJoin(report.subject_ids().begin() + 1, report.subject_ids().end(), ", "), ")");
  }
  absl::StrAppend(&out, "\nPeriod: ", Day(report.from_unix_nanos()), " to ",
                  Day(report.to_unix_nanos()), "\n\n");
  if (report.entries().empty()) {
    absl::StrAppend(&out, "No disclosures were recorded in this period.\n");
    return out;
  }
  int n = 0;
  for (const v1::DisclosureEntry& e : report.entries()) {
    absl::StrAppend(&out, ++n, ". ", Date(e.disclosed_unix_nanos()), "\n", "   To:       ",
                    e.recipient_name().empty() ? e.recipient_agency() : e.recipient_name(), " (",
                    e.recipient_agency(), ")\n");
    std::string address = Address(e.recipient_address());
    if (!address.empty()) absl::StrAppend(&out, "   Address:  ", address, "\n");
    absl::StrAppend(&out, "   What:     ", absl::StrJoin(e.categories(), ", "),
                    e.record_type().empty() ? "" : absl::StrCat(" (", e.record_type(), ")"), "\n",
                    "   Purpose:  ", e.purpose(), "\n", "   Basis:    ", e.authority(), "\n");
    if (e.count() > 1) {
      absl::StrAppend(&out, "   Repeated: ", e.count(), " disclosures to this recipient for this ",
                      "purpose, the last on ", Date(e.last_unix_nanos()), "\n");
    }
  }
  return out;
}

}  // namespace careloop::consent
