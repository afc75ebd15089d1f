#include "services/edge/fhir_api.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/status.h"
#include "services/edge/fhir_consent.h"
#include "services/edge/fhir_directory.h"
#include "services/edge/fhir_resources.h"
#include "services/edge/http_status.h"
#include "services/referral/lifecycle.h"
#include "services/referral/routing.h"

namespace careloop::edge::fhir {
namespace {

constexpr char kHttpPayload[] = "careloop.fhir.http";
constexpr char kExpressionPayload[] = "careloop.fhir.expression";

// The Tasks a search may return: the agency's sent referrals and those it
// holds now.
struct Filter {
  std::optional<std::string> id, status, owner, requester, patient, focus;
  std::optional<std::string> patient_system;                     // the "system|" of a patient token
  std::vector<std::pair<std::string, absl::Time>> last_updated;  // prefix, bound
  bool include_focus = false;
  size_t count = 100;
};

std::string IdentifierToken(absl::string_view v) {
  // "system|value" or a reference "Organization/<id>" : the value.
  const size_t bar = v.find('|');
  if (bar != absl::string_view::npos) return std::string(v.substr(bar + 1));
  const size_t slash = v.rfind('/');
  return std::string(slash == absl::string_view::npos ? v : v.substr(slash + 1));
}

absl::StatusOr<absl::Time> ParseFhirTime(absl::string_view v) {
  absl::Time t;
  std::string err;
  for (const char* f : {"%Y-%m-%dT%H:%M:%E*S%Ez", "%Y-%m-%dT%H:%M:%E*SZ", "%Y-%m-%d"}) {
    if (absl::ParseTime(f, v, absl::UTCTimeZone(), &t, &err)) return t;
  }
  return Refusal(400, "_lastUpdated", "a date is YYYY-MM-DD or an instant");
}

absl::StatusOr<Filter> FilterOf(const std::multimap<std::string, std::string>& params,
                                FhirApi::SearchVia via) {
  Filter f;
  for (const auto& [name, value] : params) {
    if (name == "_id") {
      f.id = value;
    } else if (name == "status") {
      if (!referral::FromFhirCode(value)) return Refusal(400, "status", "unknown Task status code");
      f.status = value;
    } else if (name == "owner") {
      f.owner = IdentifierToken(value);
    } else if (name == "requester") {
      f.requester = IdentifierToken(value);
    } else if (name == "patient" || name == "subject") {
      if (via == FhirApi::SearchVia::kUrl) {
        return Refusal(400, name,
                       "a person's identifier never goes in a URL: search with POST "
                       "[base]/Task/_search and the parameters as a form body");
      }
      f.patient = IdentifierToken(value);
      if (const size_t bar = value.find('|'); bar != std::string::npos && bar > 0)
        f.patient_system = value.substr(0, bar);
    } else if (name == "focus") {
      f.focus = IdentifierToken(value);
    } else if (name == "code") {
      if (IdentifierToken(value) != "fulfill") f.id = "";  // careloop's Tasks are all fulfill
    } else if (name == "_lastUpdated") {
      absl::string_view v = value;
      std::string prefix = "eq";
      for (const char* p : {"ge", "gt", "le", "lt", "eq"}) {
        if (absl::ConsumePrefix(&v, p)) {
          prefix = p;
          break;
        }
      }
      ASSIGN_OR_RETURN(absl::Time t, ParseFhirTime(v));
      f.last_updated.emplace_back(prefix, t);
    } else if (name == "_include") {
      if (value != "Task:focus") return Refusal(400, "_include", "only Task:focus is included");
      f.include_focus = true;
    } else if (name == "_count") {
      size_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n == 0) return Refusal(400, "_count", "a count is 1..");
      f.count = std::min<size_t>(n, 500);
    } else if (name != "_format") {
      return Refusal(400, name, absl::StrCat("Task search does not support '", name, "'"));
    }
  }
  return f;
}

bool Matches(const Filter& f, const v1::ReferralView& v) {
  const std::string id = TaskIdOf(v.referral());
  if (f.id && *f.id != id) return false;
  if (f.focus && *f.focus != id) return false;
  if (f.status && *f.status != referral::FhirCode(v.status())) return false;
  if (f.owner && *f.owner != v.recipient_agency()) return false;
  if (f.requester && *f.requester != v.sender_agency()) return false;
  const v1::Identifier& subject = v.manifest().subject();
  if (f.patient && *f.patient != subject.value()) return false;
  if (f.patient_system &&
      *f.patient_system != absl::StrCat(kIdentifierSystemPrefix, subject.authority()))
    return false;
  const absl::Time updated = absl::FromUnixNanos(v.updated_unix_nanos());
  for (const auto& [prefix, t] : f.last_updated) {
    const bool day = absl::FormatTime("%H:%M:%E*S", t, absl::UTCTimeZone()) == "00:00:00";
    bool ok = true;
    if (prefix == "ge") ok = updated >= t;
    if (prefix == "gt") ok = updated > t;
    if (prefix == "le") ok = updated <= (day ? t + absl::Hours(24) : t);
    if (prefix == "lt") ok = updated < t;
    if (prefix == "eq") ok = day ? updated >= t && updated < t + absl::Hours(24) : updated == t;
    if (!ok) return false;
  }
  return true;
}

Acting ActingOfSystem(const FhirSystem& sys) {
  // A read names the system: no person is named in a GET.
  return Acting{sys.agency_id, absl::StrCat("fhir-client:", sys.client_id)};
}

absl::Status NeedScope(const FhirSystem& sys, const std::string& type, char op) {
  if (sys.scopes.Allows(type, op)) return absl::OkStatus();
  return Refusal(403, type, absl::StrCat("the access token's scopes do not allow this on ", type));
}

std::string ETagOf(const v1::ReferralView& v) { return absl::StrCat("W/\"", v.version(), "\""); }

Answer Resource(const v1::ReferralView& v, json body, int status = 200) {
  Answer a;
  a.status = status;
  a.body = std::move(body);
  a.etag = ETagOf(v);
  if (v.updated_unix_nanos() != 0) a.last_modified = HttpDate(v.updated_unix_nanos());
  return a;
}

}  // namespace

absl::Status Refusal(int http_status, const std::string& expression, const std::string& message) {
  absl::Status s(StatusCodeOfHttp(http_status), message);
  s.SetPayload(kHttpPayload, absl::Cord(std::to_string(http_status)));
  if (!expression.empty()) s.SetPayload(kExpressionPayload, absl::Cord(expression));
  return s;
}

int HttpStatusOf(const absl::Status& s) {
  if (auto p = s.GetPayload(kHttpPayload); p.has_value()) {
    int http = 0;
    if (absl::SimpleAtoi(std::string(*p), &http)) return http;
  }
  return edge::HttpStatusOf(s.code(), HttpDialect::kFhir);
}

json OperationOutcomeOf(const absl::Status& s) {
  const int http = HttpStatusOf(s);
  json issue{{"severity", "error"}, {"code", IssueTypeOfHttp(http)}};
  if (http >= 500) {
    issue["diagnostics"] = "the edge could not do that just now; try again";
  } else {
    issue["diagnostics"] = std::string(s.message());
  }
  if (auto e = s.GetPayload(kExpressionPayload); e.has_value())
    issue["expression"] = json::array({std::string(*e)});
  return json{{"resourceType", "OperationOutcome"}, {"issue", json::array({issue})}};
}

std::string TaskIdOf(const std::string& referral) {
  return HexEncode(AsStringView(Sha256(referral)).substr(0, 16));
}

FhirApi::FhirApi(HubClient* hub, Desk* desk, Clock* clock, std::string base_url)
    : hub_(hub), desk_(desk), clock_(clock), base_url_(std::move(base_url)) {
  CARELOOP_CHECK(hub_ != nullptr && desk_ != nullptr && clock_ != nullptr);
}

json FhirApi::Capability() const {
  auto param = [](const char* name, const char* type) {
    return json{{"name", name}, {"type", type}};
  };
  json task{
      {"type", "Task"},
      {"interaction",
       json::array({json{{"code", "read"}}, json{{"code", "update"}}, json{{"code", "search-type"}},
                    json{{"code", "history-instance"}}})},
      {"versioning", "versioned-update"},
      {"updateCreate", false},
      {"conditionalUpdate", false},
      {"searchInclude", json::array({"Task:focus"})},
      {"documentation",
       "Search by patient (or subject) only with POST Task/_search and a form body: a "
       "person's identifier is refused in a URL."},
      {"searchParam", json::array({param("_id", "token"), param("_lastUpdated", "date"),
                                   param("owner", "reference"), param("requester", "reference"),
                                   param("status", "token"), param("patient", "reference"),
                                   param("focus", "reference"), param("code", "token")})}};
  json sr{{"type", "ServiceRequest"}, {"interaction", json::array({json{{"code", "read"}}})}};
  json patient{{"type", "Patient"},
               {"interaction", json::array({json{{"code", "read"}}})},
               {"documentation",
                "Patient/<Task id>: the person as that referral discloses them to the caller "
                "(demographics and contact only where consent allows)."}};
  json consent{
      {"type", "Consent"},
      {"interaction", json::array({json{{"code", "read"}}, json{{"code", "search-type"}}})},
      {"searchParam", json::array({param("patient", "reference"), param("status", "token")})},
      {"documentation",
       "Created in a referral transaction. Search only with POST Consent/_search and a form "
       "body naming the patient: a person's identifier is refused in a URL."}};
  auto directory = [&param](const char* type, json params) {
    return json{
        {"type", type},
        {"interaction", json::array({json{{"code", "read"}}, json{{"code", "search-type"}}})},
        {"searchParam", std::move(params)}};
  };
  json org = directory("Organization",
                       json::array({param("_id", "token"), param("name", "string"),
                                    param("identifier", "token"), param("active", "token")}));
  json hs = directory("HealthcareService",
                      json::array({param("_id", "token"), param("service-category", "token"),
                                   param("organization", "reference"), param("name", "string"),
                                   param("active", "token")}));
  return json{
      {"resourceType", "CapabilityStatement"},
      {"status", "active"},
      {"date", Instant(absl::ToUnixNanos(clock_->Now()))},
      {"kind", "instance"},
      {"software", json{{"name", "careloop"}}},
      {"implementation", json{{"description",
                               "careloop edge: SDOH referrals as Task + "
                               "ServiceRequest"},
                              {"url", base_url_}}},
      {"fhirVersion", "4.0.1"},
      {"format", json::array({"application/fhir+json"})},
      {"rest",
       json::array({json{
           {"mode", "server"},
           {"security",
            json{{"service",
                  json::array(
                      {json{{"coding", json::array({json{{"system",
                                                          "http://terminology.hl7.org/CodeSystem/"
                                                          "restful-security-service"},
                                                         {"code", "SMART-on-FHIR"}}})}}})},
                 {"description",
                  "SMART Backend Services: client_credentials with a private_key_jwt assertion "
                  "(ES384 or RS384); see .well-known/smart-configuration"}}},
           {"resource", json::array({task, sr, patient, consent, org, hs})},
           {"interaction", json::array({json{{"code", "transaction"}}})}}})}};
}

absl::StatusOr<StaffMember> FhirApi::ActorOf(const FhirSystem& sys, const std::string& user_id) {
  v1::GetAgencyRequest get;
  get.set_agency_id(sys.agency_id);
  ASSIGN_OR_RETURN(v1::AgencyRecord agency, hub_->GetAgency(get, ActingOfSystem(sys)));
  for (const v1::ActorEntry& a : agency.actors()) {
    if (a.user_id() != user_id) continue;
    if (a.inactive()) break;
    StaffMember m;
    m.agency_id = sys.agency_id;
    m.user_id = a.user_id();
    m.display_name = a.display_name();
    m.roles.assign(a.roles().begin(), a.roles().end());
    return m;
  }
  return Refusal(422, "requester",
                 "the person named is not an active staff member of the system's agency");
}

void FhirApi::Remember(const std::string& referral) {
  absl::MutexLock lock(&mu_);
  if (referrals_.size() > 100000) referrals_.clear();
  referrals_[TaskIdOf(referral)] = referral;
}

absl::StatusOr<std::string> FhirApi::ReferralOf(const FhirSystem& sys, const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = referrals_.find(id);
    if (it != referrals_.end()) return it->second;
  }
  const absl::Status missing = Refusal(404, "Task", "no such Task");
  if (id.size() != 32) return missing;
  ASSIGN_OR_RETURN(std::vector<v1::ReferralView> all, ListAll(sys));
  for (const v1::ReferralView& v : all) {
    if (TaskIdOf(v.referral()) == id) return v.referral();
  }
  return missing;
}

absl::StatusOr<std::vector<v1::ReferralView>> FhirApi::ListAll(const FhirSystem& sys) {
  std::vector<v1::ReferralView> out;
  for (bool sent : {true, false}) {
    v1::ListReferralsRequest req;
    ASSIGN_OR_RETURN(v1::ListReferralsResponse list, sent ? hub_->Sent(req, ActingOfSystem(sys))
                                                          : hub_->Inbox(req, ActingOfSystem(sys)));
    for (v1::ReferralView& v : *list.mutable_referrals()) {
      Remember(v.referral());
      out.push_back(std::move(v));
    }
  }
  return out;
}

absl::StatusOr<v1::ReferralView> FhirApi::Open(const FhirSystem& sys, const std::string& referral) {
  v1::GetReferralRequest get;
  get.set_referral(referral);
  absl::StatusOr<v1::ReferralView> v = hub_->GetReferral(get, ActingOfSystem(sys));
  // A referral another agency holds now: the same answer as none.
  if (!v.ok() && (absl::IsPermissionDenied(v.status()) || absl::IsNotFound(v.status())))
    return Refusal(404, "Task", "no such Task");
  return v;
}

absl::StatusOr<Answer> FhirApi::Transaction(const FhirSystem& sys, const json& bundle) {
  RETURN_IF_ERROR(NeedScope(sys, "Task", 'c'));
  RETURN_IF_ERROR(NeedScope(sys, "ServiceRequest", 'c'));
  ASSIGN_OR_RETURN(IncomingReferral in, ReadReferralBundle(bundle, sys.agency_id));
  ASSIGN_OR_RETURN(StaffMember who, ActorOf(sys, in.actor_user));
  std::string consent_id;
  if (in.consent.has_value()) {
    RETURN_IF_ERROR(NeedScope(sys, "Consent", 'c'));
    // The consent first, so the referral is disclosed under it; the named
    // recipient is checked before, so a referral the hub would refuse for
    // its recipient records nothing.
    if (!in.referral.recipient.empty())
      RETURN_IF_ERROR(CheckRecipient(sys, in.referral.recipient, in.referral.service));
    ASSIGN_OR_RETURN(consent_id, RecordConsent(who, in.referral.mrn, *in.consent));
  }
  absl::StatusOr<v1::SubmitReferralResponse> sent = desk_->Send(who, in.referral);
  if (!sent.ok()) {
    // The hub's refusals of what the Bundle asked for are business rules.
    if (absl::IsInvalidArgument(sent.status()) || absl::IsFailedPrecondition(sent.status()) ||
        absl::IsNotFound(sent.status())) {
      return Refusal(422, "Bundle", std::string(sent.status().message()));
    }
    return sent.status();
  }
  Remember(sent->referral());
  ASSIGN_OR_RETURN(v1::ReferralView view, Open(sys, sent->referral()));
  const std::string id = TaskIdOf(sent->referral());
  json entries = json::array();
  for (size_t i = 0; i < in.entry_types.size(); ++i) {
    json response{{"status", "201 Created"}};
    if (in.consent.has_value() && i == in.consent_entry)
      response["location"] = absl::StrCat("Consent/", consent_id);
    if (i == in.task_entry || i == in.service_request_entry) {
      const std::string type = i == in.task_entry ? "Task" : "ServiceRequest";
      response["location"] = absl::StrCat(type, "/", id, "/_history/", view.version());
      response["etag"] = ETagOf(view);
      if (view.updated_unix_nanos() != 0)
        response["lastModified"] = Instant(view.updated_unix_nanos());
    }
    json entry{{"response", response}};
    if (i == in.task_entry) entry["resource"] = TaskOf(view);
    entries.push_back(std::move(entry));
  }
  log::Info("fhir_referral_created",
            {{"agency", sys.agency_id}, {"client", sys.client_id}, {"task", id}});
  Answer a = Resource(
      view, json{{"resourceType", "Bundle"}, {"type", "transaction-response"}, {"entry", entries}});
  return a;
}

absl::Status FhirApi::CheckRecipient(const FhirSystem& sys, const std::string& agency,
                                     const std::string& service) {
  v1::GetAgencyRequest get;
  get.set_agency_id(agency);
  absl::StatusOr<v1::AgencyRecord> a = hub_->GetAgency(get, ActingOfSystem(sys));
  const absl::Status cannot = Refusal(
      422, "Task.owner", absl::StrCat("agency ", agency, " cannot take a ", service, " referral"));
  if (!a.ok()) return absl::IsNotFound(a.status()) ? cannot : a.status();
  // The hub's own rule, so the consent sent with the referral is not
  // recorded for a recipient the hub would refuse.
  return referral::CannotReceive(*a, service).empty() ? absl::OkStatus() : cannot;
}

absl::StatusOr<std::string> FhirApi::RecordConsent(const StaffMember& who, const std::string& mrn,
                                                   v1::Consent consent) {
  ASSIGN_OR_RETURN(std::string subject, desk_->ResolvePerson(who, mrn));
  consent.set_subject_id(subject);
  absl::StatusOr<std::string> id = desk_->RecordConsent(who, consent);
  if (!id.ok() && (absl::IsInvalidArgument(id.status()) || absl::IsFailedPrecondition(id.status())))
    return Refusal(422, "Consent", std::string(id.status().message()));
  return id;
}

absl::StatusOr<Answer> FhirApi::ReadTask(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "Task", 'r'));
  ASSIGN_OR_RETURN(std::string referral, ReferralOf(sys, id));
  ASSIGN_OR_RETURN(v1::ReferralView view, Open(sys, referral));
  return Resource(view, TaskOf(view));
}

absl::StatusOr<Answer> FhirApi::ReadServiceRequest(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "ServiceRequest", 'r'));
  absl::StatusOr<std::string> referral = ReferralOf(sys, id);
  if (!referral.ok()) return Refusal(404, "ServiceRequest", "no such ServiceRequest");
  ASSIGN_OR_RETURN(v1::ReferralView view, Open(sys, *referral));
  return Resource(view, ServiceRequestOf(view));
}

absl::StatusOr<Answer> FhirApi::SearchTasks(const FhirSystem& sys,
                                            const std::multimap<std::string, std::string>& params,
                                            SearchVia via) {
  RETURN_IF_ERROR(NeedScope(sys, "Task", 's'));
  ASSIGN_OR_RETURN(Filter f, FilterOf(params, via));
  if (f.include_focus) RETURN_IF_ERROR(NeedScope(sys, "ServiceRequest", 'r'));
  ASSIGN_OR_RETURN(std::vector<v1::ReferralView> all, ListAll(sys));
  std::vector<v1::ReferralView> found;
  for (v1::ReferralView& v : all) {
    if (Matches(f, v)) found.push_back(std::move(v));
  }
  // Newest change first; the listing has no sections and no history.
  std::sort(found.begin(), found.end(), [](const v1::ReferralView& a, const v1::ReferralView& b) {
    return a.updated_unix_nanos() != b.updated_unix_nanos()
               ? a.updated_unix_nanos() > b.updated_unix_nanos()
               : a.referral() < b.referral();
  });
  json entries = json::array();
  const size_t total = found.size();
  if (found.size() > f.count) found.resize(f.count);
  for (const v1::ReferralView& v : found) {
    const std::string id = TaskIdOf(v.referral());
    entries.push_back(json{{"fullUrl", absl::StrCat(base_url_, "/Task/", id)},
                           {"resource", TaskOf(v)},
                           {"search", json{{"mode", "match"}}}});
    if (f.include_focus) {
      entries.push_back(json{{"fullUrl", absl::StrCat(base_url_, "/ServiceRequest/", id)},
                             {"resource", ServiceRequestOf(v)},
                             {"search", json{{"mode", "include"}}}});
    }
  }
  Answer a;
  a.body =
      json{{"resourceType", "Bundle"},
           {"type", "searchset"},
           {"total", total},
           {"link",
            json::array({json{{"relation", "self"}, {"url", absl::StrCat(base_url_, "/Task")}}})},
           {"entry", entries}};
  return a;
}

absl::StatusOr<Answer> FhirApi::UpdateTask(const FhirSystem& sys, const std::string& id,
                                           const std::string& if_match, const json& task,
                                           const json& provenance) {
  RETURN_IF_ERROR(NeedScope(sys, "Task", 'u'));
  ASSIGN_OR_RETURN(StatusMove move, ReadTaskUpdate(task, id));
  absl::string_view tag = if_match;
  uint64_t expected = 0;
  if (!absl::ConsumePrefix(&tag, "W/\"") || !absl::ConsumeSuffix(&tag, "\"") ||
      !absl::SimpleAtoi(tag, &expected) || expected == 0) {
    return Refusal(412, "If-Match",
                   "update a Task with If-Match: W/\"<version>\" of the Task you read");
  }
  ASSIGN_OR_RETURN(std::string referral, ReferralOf(sys, id));
  ASSIGN_OR_RETURN(v1::ReferralView before, Open(sys, referral));
  if (before.version() != expected) {
    return Refusal(412, "If-Match",
                   absl::StrCat("the Task is at version ", before.version(), ", not ", expected));
  }
  ASSIGN_OR_RETURN(std::string user, ActorOfProvenance(provenance));
  ASSIGN_OR_RETURN(StaffMember who, ActorOf(sys, user));
  move.referral = referral;
  move.expected_version = expected;
  if (move.status != before.status()) {
    absl::Status moved = desk_->Move(who, move).status();
    if (absl::IsAborted(moved)) return Refusal(412, "If-Match", std::string(moved.message()));
    // The lifecycle's refusals: a move it does not allow from here, or a
    // reason it needs (rejected, cancelled, on-hold, failed).
    if (absl::IsFailedPrecondition(moved))
      return Refusal(422, "Task.status", std::string(moved.message()));
    if (absl::IsInvalidArgument(moved))
      return Refusal(422, "Task.statusReason", std::string(moved.message()));
    RETURN_IF_ERROR(moved);
  }
  ASSIGN_OR_RETURN(v1::ReferralView after, Open(sys, referral));
  log::Info("fhir_task_updated", {{"agency", sys.agency_id},
                                  {"client", sys.client_id},
                                  {"task", id},
                                  {"status", referral::FhirCode(after.status())}});
  return Resource(after, TaskOf(after));
}

namespace {

json Searchset(const std::string& url, const std::vector<json>& resources, size_t total) {
  json entries = json::array();
  for (const json& r : resources) {
    entries.push_back(json{{"fullUrl", absl::StrCat(url, "/", r["id"].get<std::string>())},
                           {"resource", r},
                           {"search", json{{"mode", "match"}}}});
  }
  return json{{"resourceType", "Bundle"},
              {"type", "searchset"},
              {"total", total},
              {"link", json::array({json{{"relation", "self"}, {"url", url}}})},
              {"entry", entries}};
}

// The directory's search parameters: each name once, known, or 400.
absl::StatusOr<std::map<std::string, std::string>> DirectoryParams(
    const std::multimap<std::string, std::string>& params, const std::set<std::string>& known) {
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : params) {
    if (name == "_format") continue;
    if (!known.contains(name))
      return Refusal(400, name, absl::StrCat("this search does not support '", name, "'"));
    if (!out.emplace(name, value).second)
      return Refusal(400, name, absl::StrCat("'", name, "' is given twice"));
  }
  return out;
}

bool ContainsFolded(const std::string& haystack, const std::string& needle) {
  return absl::StrContains(absl::AsciiStrToLower(haystack), absl::AsciiStrToLower(needle));
}

}  // namespace

absl::StatusOr<Answer> FhirApi::TaskHistory(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "Task", 'r'));
  ASSIGN_OR_RETURN(std::string referral, ReferralOf(sys, id));
  ASSIGN_OR_RETURN(v1::ReferralView view, Open(sys, referral));
  Answer out;
  out.body = TaskHistoryOf(view, base_url_);
  return out;
}

absl::StatusOr<Answer> FhirApi::ReadPatient(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "Patient", 'r'));
  absl::StatusOr<std::string> referral = ReferralOf(sys, id);
  if (!referral.ok()) return Refusal(404, "Patient", "no such Patient");
  ASSIGN_OR_RETURN(v1::ReferralView view, Open(sys, *referral));
  return Resource(view, PatientOf(view));
}

absl::StatusOr<Answer> FhirApi::ReadConsent(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "Consent", 'r'));
  v1::GetConsentRequest get;
  get.set_consent_id(id);
  absl::StatusOr<v1::ConsentRecord> r = hub_->GetConsent(get, ActingOfSystem(sys));
  if (!r.ok() && (absl::IsNotFound(r.status()) || absl::IsPermissionDenied(r.status()) ||
                  absl::IsInvalidArgument(r.status()))) {
    return Refusal(404, "Consent", "no such Consent");
  }
  RETURN_IF_ERROR(r.status());
  Answer out;
  out.body = FhirConsentOf(r->consent(),
                           json{{"system", kSubjectSystem}, {"value", r->consent().subject_id()}});
  return out;
}

absl::StatusOr<Answer> FhirApi::SearchConsents(
    const FhirSystem& sys, const std::multimap<std::string, std::string>& params, SearchVia via) {
  RETURN_IF_ERROR(NeedScope(sys, "Consent", 's'));
  ASSIGN_OR_RETURN(auto p, DirectoryParams(params, {"patient", "status"}));
  if (!p.contains("patient")) return Refusal(400, "patient", "a Consent search names the patient");
  if (via == SearchVia::kUrl) {
    return Refusal(400, "patient",
                   "a person's identifier never goes in a URL: search with POST "
                   "[base]/Consent/_search and the parameters as a form body");
  }
  // "system|value" as Task.for shows it, or a value of the agency's own
  // record numbers.
  const std::string& token = p["patient"];
  v1::ResolveSubjectRequest resolve;
  resolve.set_lookup_only(true);
  v1::Identifier* person = resolve.add_identifiers();
  person->set_value(IdentifierToken(token));
  person->set_authority(absl::StrCat(sys.agency_id, "/mrn"));
  if (const size_t bar = token.find('|'); bar != std::string::npos) {
    absl::string_view system = absl::string_view(token).substr(0, bar);
    if (!absl::ConsumePrefix(&system, kIdentifierSystemPrefix)) system = "";
    person->set_authority(std::string(system));
  }
  const std::string url = base_url_ + "/Consent";
  absl::StatusOr<v1::ResolveSubjectResponse> who =
      hub_->ResolveSubject(resolve, ActingOfSystem(sys));
  if (person->authority().empty() ||
      (!who.ok() && (absl::IsNotFound(who.status()) || absl::IsPermissionDenied(who.status()) ||
                     absl::IsFailedPrecondition(who.status())))) {
    Answer none;
    none.body = Searchset(url, {}, 0);
    return none;
  }
  if (absl::IsInvalidArgument(who.status()))
    return Refusal(400, "patient", std::string(who.status().message()));
  RETURN_IF_ERROR(who.status());
  v1::ListConsentsRequest list;
  list.set_subject_id(who->subject_id());
  absl::StatusOr<v1::ListConsentsResponse> consents = hub_->ListConsents(list, ActingOfSystem(sys));
  if (absl::IsPermissionDenied(consents.status())) consents = v1::ListConsentsResponse();
  RETURN_IF_ERROR(consents.status());
  const json identifier{{"system", absl::StrCat(kIdentifierSystemPrefix, person->authority())},
                        {"value", person->value()}};
  std::vector<json> found;
  for (const v1::ConsentRecord& r : consents->consents()) {
    json c = FhirConsentOf(r.consent(), identifier);
    if (p.contains("status") && c["status"] != p["status"]) continue;
    found.push_back(std::move(c));
  }
  Answer out;
  out.body = Searchset(url, found, found.size());
  return out;
}

absl::StatusOr<Answer> FhirApi::ReadOrganization(const FhirSystem& sys, const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "Organization", 'r'));
  v1::GetAgencyRequest get;
  get.set_agency_id(id);
  absl::StatusOr<v1::AgencyRecord> a = hub_->GetAgency(get, ActingOfSystem(sys));
  if (!a.ok() && (absl::IsNotFound(a.status()) || absl::IsInvalidArgument(a.status())))
    return Refusal(404, "Organization", "no such Organization");
  RETURN_IF_ERROR(a.status());
  Answer out;
  out.body = OrganizationOf(*a);
  return out;
}

absl::StatusOr<Answer> FhirApi::SearchOrganizations(
    const FhirSystem& sys, const std::multimap<std::string, std::string>& params) {
  RETURN_IF_ERROR(NeedScope(sys, "Organization", 's'));
  ASSIGN_OR_RETURN(auto p, DirectoryParams(params, {"_id", "name", "identifier", "active"}));
  v1::SearchAgenciesRequest req;
  req.set_include_suspended(p.contains("active") && p["active"] == "false");
  ASSIGN_OR_RETURN(std::vector<v1::AgencyRecord> all,
                   hub_->SearchAgencies(req, ActingOfSystem(sys)));
  std::vector<json> found;
  for (const v1::AgencyRecord& a : all) {
    if (p.contains("_id") && p["_id"] != a.agency_id()) continue;
    if (p.contains("identifier") && IdentifierToken(p["identifier"]) != a.agency_id()) continue;
    if (p.contains("name") && !ContainsFolded(a.profile().display_name(), p["name"])) continue;
    if (p.contains("active") && (p["active"] == "true") != a.active()) continue;
    found.push_back(OrganizationOf(a));
  }
  Answer out;
  out.body = Searchset(base_url_ + "/Organization", found, found.size());
  return out;
}

absl::StatusOr<Answer> FhirApi::ReadHealthcareService(const FhirSystem& sys,
                                                      const std::string& id) {
  RETURN_IF_ERROR(NeedScope(sys, "HealthcareService", 'r'));
  // "<agency id>.<service code>": service codes hold no dot.
  const size_t dot = id.rfind('.');
  const absl::Status missing = Refusal(404, "HealthcareService", "no such HealthcareService");
  if (dot == std::string::npos || dot == 0 || dot + 1 == id.size()) return missing;
  v1::GetAgencyRequest get;
  get.set_agency_id(id.substr(0, dot));
  absl::StatusOr<v1::AgencyRecord> a = hub_->GetAgency(get, ActingOfSystem(sys));
  if (!a.ok() && (absl::IsNotFound(a.status()) || absl::IsInvalidArgument(a.status())))
    return missing;
  RETURN_IF_ERROR(a.status());
  const std::string service = id.substr(dot + 1);
  const auto& offered = a->profile().services();
  if (std::find(offered.begin(), offered.end(), service) == offered.end()) return missing;
  Answer out;
  out.body = HealthcareServiceOf(*a, service);
  return out;
}

absl::StatusOr<Answer> FhirApi::SearchHealthcareServices(
    const FhirSystem& sys, const std::multimap<std::string, std::string>& params) {
  RETURN_IF_ERROR(NeedScope(sys, "HealthcareService", 's'));
  ASSIGN_OR_RETURN(auto p, DirectoryParams(params, {"service-category", "organization", "_id",
                                                    "name", "active"}));
  v1::SearchAgenciesRequest req;
  const std::string category =
      p.contains("service-category") ? IdentifierToken(p["service-category"]) : "";
  req.set_service(category);
  req.set_include_suspended(p.contains("active") && p["active"] == "false");
  ASSIGN_OR_RETURN(std::vector<v1::AgencyRecord> all,
                   hub_->SearchAgencies(req, ActingOfSystem(sys)));
  std::vector<json> found;
  for (const v1::AgencyRecord& a : all) {
    if (p.contains("organization") && IdentifierToken(p["organization"]) != a.agency_id()) continue;
    if (p.contains("name") && !ContainsFolded(a.profile().display_name(), p["name"])) continue;
    if (p.contains("active") && (p["active"] == "true") != a.active()) continue;
    for (const std::string& service : a.profile().services()) {
      if (!category.empty() && service != category) continue;
      json hs = HealthcareServiceOf(a, service);
      if (p.contains("_id") && p["_id"] != hs["id"]) continue;
      found.push_back(std::move(hs));
    }
  }
  Answer out;
  out.body = Searchset(base_url_ + "/HealthcareService", found, found.size());
  return out;
}

}  // namespace careloop::edge::fhir
