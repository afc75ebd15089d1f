// The edge's JSON over HTTP, shared by its route files: answers (errors
// as JSON, internal failures without their detail), request bodies and
// their fields, protobuf messages as the console reads them.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace careloop::edge::http {

using json = nlohmann::json;

// The route pattern (never the path a client sent) and the staff member
// of the request this thread is answering, for the log.
std::string& CurrentRoute();
std::string& CurrentActor();

void Reply(httplib::Response& res, int status, const json& body);
void ReplyError(httplib::Response& res, int status, const std::string& message);
// A core error as HTTP. Internal failures say only that something failed:
// their messages are for the operator's log, not the browser.
void ReplyStatus(httplib::Response& res, const absl::Status& s);
// The JSON object a request carries, or why not.
absl::StatusOr<json> BodyOf(const httplib::Request& req);
// A string field of `body`; "" when absent; an error when not a string.
absl::StatusOr<std::string> StringField(const json& body, const char* name);
// The string fields `names` of `body`, in order, or the first error.
absl::StatusOr<std::vector<std::string>> StringFields(const json& body,
                                                      std::initializer_list<const char*> names);
// A list of strings of `body` (absent: an empty list).
absl::StatusOr<std::vector<std::string>> StringList(const json& body, const char* name);
// A day "YYYY-MM-DD" in UTC as its start (`end`: the next day's start, so
// the day is included); "" is 0 (no bound).
absl::StatusOr<int64_t> DayBound(const std::string& date, bool end);
// A message as the console reads it: proto3 JSON with the .proto field
// names (bytes in base64, enums by name).
json ProtoJson(const google::protobuf::Message& m);

}  // namespace careloop::edge::http
