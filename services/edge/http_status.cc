#include "services/edge/http_status.h"

#include <array>

namespace careloop::edge {
namespace {

struct Row {
  absl::StatusCode code;
  int console, fhir;
  const char* issue;  // of the FHIR status
};

// The first row of an HTTP status is the code a FHIR refusal carries.
constexpr std::array<Row, 11> kRows = {{
    {absl::StatusCode::kInvalidArgument, 400, 400, "invalid"},
    {absl::StatusCode::kOutOfRange, 400, 400, "invalid"},
    {absl::StatusCode::kUnauthenticated, 401, 401, "login"},
    {absl::StatusCode::kPermissionDenied, 403, 403, "forbidden"},
    {absl::StatusCode::kNotFound, 404, 404, "not-found"},
    {absl::StatusCode::kAlreadyExists, 409, 409, "conflict"},
    {absl::StatusCode::kAborted, 409, 412, "conflict"},
    {absl::StatusCode::kFailedPrecondition, 409, 422, "business-rule"},
    {absl::StatusCode::kResourceExhausted, 429, 429, "throttled"},
    {absl::StatusCode::kUnavailable, 503, 503, "transient"},
    {absl::StatusCode::kDeadlineExceeded, 503, 503, "transient"},
}};

}  // namespace

int HttpStatusOf(absl::StatusCode code, HttpDialect dialect) {
  for (const Row& r : kRows) {
    if (r.code == code) return dialect == HttpDialect::kFhir ? r.fhir : r.console;
  }
  return 500;
}

absl::StatusCode StatusCodeOfHttp(int http) {
  for (const Row& r : kRows) {
    if (r.fhir == http) return r.code;
  }
  return absl::StatusCode::kInternal;
}

const char* IssueTypeOfHttp(int http) {
  for (const Row& r : kRows) {
    if (r.fhir == http) return r.issue;
  }
  return "exception";
}

}  // namespace careloop::edge
