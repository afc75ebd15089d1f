// The disclosure report in the forms people use: CSV for a spreadsheet, and
// plain text that can be handed to the person it is about.
#pragma once

#include <string>

#include "careloop/v1/consent.pb.h"

namespace careloop::consent {

// One header row, then one row per entry (RFC 4180 quoting).
std::string ReportCsv(const v1::DisclosureReportResponse& report);
// A letter-style accounting: who received what about the person, when, why,
// and under which consent or authority.
std::string ReportText(const v1::DisclosureReportResponse& report);

}  // namespace careloop::consent
