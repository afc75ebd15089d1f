#include "services/edge/http_json.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/status.h"
#include "google/protobuf/util/json_util.h"
#include "services/edge/http_status.h"

namespace careloop::edge::http {

std::string& CurrentRoute() {
  thread_local std::string route;
  return route;
}

std::string& CurrentActor() {
  thread_local std::string actor;
  return actor;
}

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void ReplyError(httplib::Response& res, int status, const std::string& message) {
  Reply(res, status, json{{"error", message}});
}

void ReplyStatus(httplib::Response& res, const absl::Status& s) {
  const int status = HttpStatusOf(s.code());
  if (status >= 500) {
    log::Error("edge_http_failed",
               {{"route", CurrentRoute()}, {"code", absl::StatusCodeToString(s.code())}});
    ReplyError(res, status, "the edge could not do that just now; try again");
    return;
  }
  ReplyError(res, status, std::string(s.message()));
}

absl::StatusOr<json> BodyOf(const httplib::Request& req) {
  if (!absl::StartsWith(req.get_header_value("Content-Type"), "application/json")) {
    return absl::InvalidArgumentError("send the request body as application/json");
  }
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return absl::InvalidArgumentError("the request body is not a JSON object");
  }
  return body;
}

absl::StatusOr<std::string> StringField(const json& body, const char* name) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" must be a string"));
  }
  return it->get<std::string>();
}

json ProtoJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  CARELOOP_CHECK(google::protobuf::util::MessageToJsonString(m, &out, o).ok());
  return json::parse(out);
}

absl::StatusOr<std::vector<std::string>> StringFields(const json& body,
                                                      std::initializer_list<const char*> names) {
  std::vector<std::string> out;
  for (const char* name : names) {
    ASSIGN_OR_RETURN(std::string v, StringField(body, name));
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> StringList(const json& body, const char* name) {
  std::vector<std::string> out;
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_array())
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" must be a list"));
  for (const json& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" holds strings only"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

absl::StatusOr<int64_t> DayBound(const std::string& date, bool end) {
  if (date.empty()) return 0;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d", date, absl::UTCTimeZone(), &t, &err))
    return absl::InvalidArgumentError("a date is YYYY-MM-DD");
  return absl::ToUnixNanos(end ? t + absl::Hours(24) : t);
}

}  // namespace careloop::edge::http
