// One mapping of careloop's status codes to HTTP for the edge's two APIs:
// the console's JSON (a conflict is 409) and FHIR (a stale version is 412,
// a business rule 422), with the OperationOutcome issue type of each.
#pragma once

#include "absl/status/status.h"

namespace careloop::edge {

enum class HttpDialect { kConsole, kFhir };

int HttpStatusOf(absl::StatusCode code, HttpDialect dialect = HttpDialect::kConsole);
// The status code a FHIR refusal with this HTTP status carries.
absl::StatusCode StatusCodeOfHttp(int http);
// The OperationOutcome issue type (FHIR issue-type) of an HTTP status.
const char* IssueTypeOfHttp(int http);

}  // namespace careloop::edge
