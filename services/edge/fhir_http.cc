// The FHIR R4 API's routes (fhir_api.h) under /fhir/R4, and the SMART
// Backend Services token endpoint (smart_auth.h). Systems authenticate with
// a bearer token, not a session, so these routes carry no cookies and no
// CSRF token; every answer is application/fhir+json, every error an
// OperationOutcome. Log lines name the route, the status and the client.
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status.h"
#include "services/edge/edge_http.h"
#include "services/edge/fhir_api.h"
#include "services/edge/http_json.h"
#include "services/edge/smart_auth.h"

namespace careloop::edge {
namespace {

using nlohmann::json;

constexpr char kFhirJson[] = "application/fhir+json";
constexpr char kBase[] = "/fhir/R4";

void ReplyFhir(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), kFhirJson);
}

void ReplyFhirError(httplib::Response& res, const absl::Status& s) {
  const int status = fhir::HttpStatusOf(s);
  if (status >= 500) {
    log::Error("fhir_failed",
               {{"route", http::CurrentRoute()}, {"code", absl::StatusCodeToString(s.code())}});
  }
  if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
  ReplyFhir(res, status, fhir::OperationOutcomeOf(s));
}

void ReplyAnswer(httplib::Response& res, const fhir::Answer& a) {
  if (!a.etag.empty()) res.set_header("ETag", a.etag);
  if (!a.last_modified.empty()) res.set_header("Last-Modified", a.last_modified);
  if (!a.location.empty()) res.set_header("Location", a.location);
  ReplyFhir(res, a.status, a.body);
}

// A FHIR request body: JSON (application/fhir+json or application/json).
absl::StatusOr<json> FhirBody(const httplib::Request& req) {
  const std::string type = req.get_header_value("Content-Type");
  if (!absl::StartsWith(type, kFhirJson) && !absl::StartsWith(type, "application/json")) {
    return fhir::Refusal(400, "", "send the resource as application/fhir+json");
  }
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object())
    return fhir::Refusal(400, "", "the request body is not a JSON object");
  return body;
}

// A POSTed search's parameters: its form body, none in the URL. (httplib
// merges a form body into req.params, so the URL's own query is judged
// from the request target.)
absl::StatusOr<std::multimap<std::string, std::string>> FormSearchParams(
    const httplib::Request& req) {
  if (absl::StrContains(req.target, '?'))
    return fhir::Refusal(400, "", "give a POSTed search's parameters in its body, not in the URL");
  if (!req.body.empty() && !absl::StartsWith(req.get_header_value("Content-Type"),
                                             "application/x-www-form-urlencoded")) {
    return fhir::Refusal(400, "", "send the search as application/x-www-form-urlencoded");
  }
  httplib::Params form;
  httplib::detail::parse_query_text(req.body, form);
  return std::multimap<std::string, std::string>(form.begin(), form.end());
}

}  // namespace

void EdgeHttp::RegisterFhirRoutes() {
  fhir::FhirApi* api = parts_.fhir;
  SmartAuth* smart = parts_.smart;
  using Action =
      std::function<absl::StatusOr<fhir::Answer>(const httplib::Request&, const FhirSystem&)>;
  // Every FHIR route but the public ones: a valid bearer token first.
  auto with_token = [smart](const std::string& pattern, Action action) {
    return [smart, pattern, action = std::move(action)](const httplib::Request& req,
                                                        httplib::Response& res) {
      http::CurrentRoute() = pattern;
      absl::StatusOr<FhirSystem> sys = smart->Authenticate(req.get_header_value("Authorization"));
      if (!sys.ok()) return ReplyFhirError(res, sys.status());
      http::CurrentActor() = absl::StrCat(sys->agency_id, "/fhir-client:", sys->client_id);
      absl::StatusOr<fhir::Answer> a = action(req, *sys);
      if (!a.ok()) return ReplyFhirError(res, a.status());
      ReplyAnswer(res, *a);
    };
  };
  const std::string base = kBase;
  server_->Get(base + "/metadata", [api, base](const httplib::Request&, httplib::Response& res) {
    http::CurrentRoute() = base + "/metadata";
    ReplyFhir(res, 200, api->Capability());
  });
  server_->Get(base + "/.well-known/smart-configuration", [smart, base](const httplib::Request&,
                                                                        httplib::Response& res) {
    http::CurrentRoute() = base + "/.well-known/smart-configuration";
    http::Reply(
        res, 200,
        json{{"token_endpoint", smart->options().token_url},
             {"grant_types_supported", json::array({"client_credentials"})},
             {"token_endpoint_auth_methods_supported", json::array({"private_key_jwt"})},
             {"token_endpoint_auth_signing_alg_values_supported", json::array({"ES384", "RS384"})},
             {"scopes_supported",
              json::array({"system/Task.cruds", "system/ServiceRequest.crs", "system/Patient.r",
                           "system/Consent.crs", "system/Organization.rs",
                           "system/HealthcareService.rs", "system/Consent.read",
                           "system/Patient.read", "system/Task.read", "system/Task.write",
                           "system/ServiceRequest.read", "system/ServiceRequest.write",
                           "system/Organization.read", "system/HealthcareService.read",
                           "system/*.read", "system/*.write"})},
             {"capabilities", json::array({"client-confidential-asymmetric"})}});
  });
  server_->Post(
      base + "/auth/token", [smart, base](const httplib::Request& req, httplib::Response& res) {
        http::CurrentRoute() = base + "/auth/token";
        res.set_header("Pragma", "no-cache");
        if (!absl::StartsWith(req.get_header_value("Content-Type"),
                              "application/x-www-form-urlencoded")) {
          return http::Reply(res, 400,
                             json{{"error", "invalid_request"},
                                  {"error_description", "send application/x-www-form-urlencoded"}});
        }
        httplib::Params params;
        httplib::detail::parse_query_text(req.body, params);
        std::map<std::string, std::string> form;
        for (const auto& [k, v] : params) {
          if (!form.emplace(k, v).second) {
            return http::Reply(res, 400,
                               json{{"error", "invalid_request"},
                                    {"error_description", "a field is given twice"}});
          }
        }
        SmartAuth::Issued issued = smart->Token(form);
        if (!issued.ok) {
          log::Info("fhir_token_refused", {{"error", issued.error.error}});
          return http::Reply(
              res, issued.error.http_status,
              json{{"error", issued.error.error}, {"error_description", issued.error.description}});
        }
        http::Reply(res, 200,
                    json{{"access_token", issued.token.token},
                         {"token_type", "bearer"},
                         {"expires_in", issued.token.expires_in_seconds},
                         {"scope", issued.token.scope}});
      });
  server_->Post(base, with_token(base,
                                 [api](const httplib::Request& req,
                                       const FhirSystem& sys) -> absl::StatusOr<fhir::Answer> {
                                   ASSIGN_OR_RETURN(json bundle, FhirBody(req));
                                   return api->Transaction(sys, bundle);
                                 }));
  const std::string task = base + "/Task/([A-Za-z0-9.-]{1,64})";
  server_->Get(task, with_token(task, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadTask(sys, req.matches[1]);
               }));
  server_->Put(
      task, with_token(task,
                       [api](const httplib::Request& req,
                             const FhirSystem& sys) -> absl::StatusOr<fhir::Answer> {
                         ASSIGN_OR_RETURN(json body, FhirBody(req));
                         json provenance;
                         if (req.has_header("X-Provenance")) {
                           provenance =
                               json::parse(req.get_header_value("X-Provenance"), nullptr, false);
                           if (provenance.is_discarded())
                             return fhir::Refusal(400, "X-Provenance", "X-Provenance is not JSON");
                         }
                         return api->UpdateTask(sys, req.matches[1],
                                                req.get_header_value("If-Match"), body, provenance);
                       }));
  // A search of people's records: GET with URL parameters (a person's
  // identifier among them is refused), or POST [type]/_search with a form
  // body (FHIR R4 3.1.1.5.1), the only way to search by a person.
  using Search = absl::StatusOr<fhir::Answer> (fhir::FhirApi::*)(
      const FhirSystem&, const std::multimap<std::string, std::string>&, fhir::FhirApi::SearchVia);
  auto searches = [&](const std::string& type, Search search) {
    const std::string path = base + "/" + type;
    server_->Get(
        path, with_token(path, [api, search](const httplib::Request& req, const FhirSystem& sys) {
          return (api->*search)(sys, {req.params.begin(), req.params.end()},
                                fhir::FhirApi::SearchVia::kUrl);
        }));
    server_->Post(path + "/_search",
                  with_token(path + "/_search",
                             [api, search](const httplib::Request& req,
                                           const FhirSystem& sys) -> absl::StatusOr<fhir::Answer> {
                               ASSIGN_OR_RETURN(auto params, FormSearchParams(req));
                               return (api->*search)(sys, params,
                                                     fhir::FhirApi::SearchVia::kFormBody);
                             }));
  };
  searches("Task", &fhir::FhirApi::SearchTasks);
  searches("Consent", &fhir::FhirApi::SearchConsents);
  const std::string history = base + "/Task/([A-Za-z0-9.-]{1,64})/_history";
  server_->Get(history,
               with_token(history, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->TaskHistory(sys, req.matches[1]);
               }));
  const std::string patient = base + "/Patient/([A-Za-z0-9.-]{1,64})";
  server_->Get(patient,
               with_token(patient, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadPatient(sys, req.matches[1]);
               }));
  const std::string consent = base + "/Consent/([A-Za-z0-9.-]{1,64})";
  server_->Get(consent,
               with_token(consent, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadConsent(sys, req.matches[1]);
               }));
  const std::string org = base + "/Organization/([A-Za-z0-9.-]{1,64})";
  server_->Get(org, with_token(org, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadOrganization(sys, req.matches[1]);
               }));
  server_->Get(
      base + "/Organization",
      with_token(base + "/Organization", [api](const httplib::Request& req, const FhirSystem& sys) {
        return api->SearchOrganizations(sys, {req.params.begin(), req.params.end()});
      }));
  const std::string hs = base + "/HealthcareService/([A-Za-z0-9.-]{1,64})";
  server_->Get(hs, with_token(hs, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadHealthcareService(sys, req.matches[1]);
               }));
  server_->Get(base + "/HealthcareService",
               with_token(base + "/HealthcareService", [api](const httplib::Request& req,
                                                             const FhirSystem& sys) {
                 return api->SearchHealthcareServices(sys, {req.params.begin(), req.params.end()});
               }));
  const std::string sr = base + "/ServiceRequest/([A-Za-z0-9.-]{1,64})";
  server_->Get(sr, with_token(sr, [api](const httplib::Request& req, const FhirSystem& sys) {
                 return api->ReadServiceRequest(sys, req.matches[1]);
               }));
}

}  // namespace careloop::edge
