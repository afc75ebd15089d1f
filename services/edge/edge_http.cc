#include "services/edge/edge_http.h"

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/status.h"
#include "google/protobuf/util/json_util.h"
#include "services/directory/agencies.h"
#include "services/edge/console_assets.h"
#include "services/edge/http_json.h"
#include "services/edge/totp.h"
#include "services/referral/lifecycle.h"

namespace careloop::edge {
namespace {

using http::BodyOf;
using http::json;
using http::ProtoJson;
using http::Reply;
using http::ReplyError;
using http::ReplyStatus;
using http::StringField;
using http::StringFields;
using http::StringList;

constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'";

void SetSecurityHeaders(httplib::Response& res) {
  res.set_header("Content-Security-Policy", kContentSecurityPolicy);
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cross-Origin-Opener-Policy", "same-origin");
  res.set_header("Cross-Origin-Resource-Policy", "same-origin");
  res.set_header("Permissions-Policy", "camera=(), microphone=(), geolocation=()");
  res.set_header("Cache-Control", "no-store");
}

std::string CookieValue(const httplib::Request& req, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(req.get_header_value("Cookie"), ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) {
      return std::string(part);
    }
  }
  return "";
}

json MemberJson(const StaffMember& m) {
  return json{{"agency_id", m.agency_id},       {"user_id", m.user_id},
              {"display_name", m.display_name}, {"roles", m.roles},
              {"disabled", m.disabled},         {"has_second_factor", m.has_second_factor}};
}

json StaffJson(const Principal& who) {
  json j = MemberJson(who.member);
  j["must_change_password"] = who.must_change_password;
  return j;
}

// What an admin hands a new or reset staff member, once.
json EnrollmentJson(const Enrollment& e) {
  json j = json::object();
  if (!e.one_time_password.empty()) j["one_time_password"] = e.one_time_password;
  if (!e.totp_secret.empty()) {
    j["totp_secret"] = Base32Encode(e.totp_secret);
    j["totp_uri"] = e.totp_uri;
  }
  return j;
}

absl::StatusOr<v1::ReferralPriority> PriorityOf(const std::string& name) {
  if (name.empty() || name == "routine") return v1::ROUTINE;
  if (name == "urgent") return v1::URGENT;
  if (name == "asap") return v1::ASAP;
  if (name == "stat") return v1::STAT;
  return absl::InvalidArgumentError("priority is routine, urgent, asap or stat");
}

// A status filter or move by its FHIR Task code ("" : any).
absl::StatusOr<v1::TaskStatus> StatusOf(const std::string& code) {
  if (code.empty()) return v1::TASK_STATUS_UNSPECIFIED;
  std::optional<v1::TaskStatus> s = referral::FromFhirCode(code);
  if (!s) return absl::InvalidArgumentError("unknown status");
  return *s;
}

absl::StatusOr<std::vector<SectionInput>> SectionsOf(const json& body) {
  const auto it = body.find("sections");
  if (it == body.end() || !it->is_array()) {
    return absl::InvalidArgumentError("\"sections\" must be a list");
  }
  std::vector<SectionInput> out;
  for (const json& item : *it) {
    if (!item.is_object()) return absl::InvalidArgumentError("each section is an object");
    ASSIGN_OR_RETURN(auto f, StringFields(item, {"id", "category", "text"}));
    out.push_back(SectionInput{f[0], f[1], f[2]});
  }
  return out;
}

// A staff change naming one member ("user"): its answer.
void StaffAction(
    const httplib::Request& req, httplib::Response& res,
    const std::function<absl::StatusOr<json>(const std::string& user, const json& body)>& action) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::string> user = StringField(*body, "user");
  if (!user.ok()) return ReplyStatus(res, user.status());
  absl::StatusOr<json> answer = action(*user, *body);
  if (!answer.ok()) return ReplyStatus(res, answer.status());
  Reply(res, 200, *answer);
}

// What a staff change that hands nothing out answers.
absl::StatusOr<json> Done(const absl::Status& s) {
  if (!s.ok()) return s;
  return json{{"done", true}};
}

}  // namespace

std::string SessionCookieName(bool tls) {
  return tls ? "__Host-careloop_session" : "careloop_session";
}

EdgeHttp::EdgeHttp(EdgeHttpOptions options, StaffAccounts* accounts, Clock* clock)
    : EdgeHttp(std::move(options), EdgeParts{accounts, nullptr, nullptr, nullptr, nullptr}, clock) {
}

EdgeHttp::EdgeHttp(EdgeHttpOptions options, EdgeParts parts, Clock* clock)
    : options_(std::move(options)),
      accounts_(parts.accounts),
      parts_(std::move(parts)),
      requests_(clock, options_.requests_per_minute, options_.requests_per_minute / 4),
      logins_(clock, options_.logins_per_minute, options_.logins_per_minute) {
  if (tls()) {
    server_ = std::make_unique<httplib::SSLServer>(options_.tls_cert_file.c_str(),
                                                   options_.tls_key_file.c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  const size_t threads = options_.worker_threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->set_read_timeout(10, 0);
  server_->set_write_timeout(10, 0);
  // One request per connection: cpp-httplib serves a connection on one
  // pool thread for as long as it stays open, so consoles that keep their
  // connections alive between polls would hold every worker. Closed after
  // each answer, a console holds a thread only while it is being answered.
  server_->set_keep_alive_max_count(1);
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    http::CurrentRoute() = "(unrouted)";
    http::CurrentActor().clear();
    SetSecurityHeaders(res);
    if (!requests_.Allow(req.remote_addr)) {
      ReplyError(res, 429, "too many requests; wait a moment");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty() && absl::StartsWith(req.path, "/fhir/")) {
      const json outcome{
          {"resourceType", "OperationOutcome"},
          {"issue", json::array({json{
                        {"severity", "error"},
                        {"code", res.status == 404 ? "not-supported" : "invalid"},
                        {"diagnostics", res.status == 404 ? "this FHIR interaction is not served "
                                                            "(see /fhir/R4/metadata)"
                                                          : "the request was refused"}}})}};
      res.set_content(outcome.dump(), "application/fhir+json");
      return;
    }
    if (res.body.empty()) {
      ReplyError(res, res.status, res.status == 404 ? "no such page" : "the request was refused");
    }
  });
  server_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
    log::Info("edge_http", {{"method", req.method},
                            {"route", http::CurrentRoute()},
                            {"status", res.status},
                            {"staff", http::CurrentActor().empty() ? "-" : http::CurrentActor()}});
  });
  CARELOOP_CHECK(accounts_ != nullptr);
  RegisterRoutes();
  if (parts_.desk != nullptr) RegisterDeskRoutes();
  if (parts_.staff != nullptr) RegisterStaffRoutes();
  if (parts_.privacy != nullptr) RegisterPrivacyRoutes();
  if (parts_.fhir != nullptr && parts_.smart != nullptr) RegisterFhirRoutes();
  if (parts_.dev_seed && !options_.dev_seed_token.empty()) {
    Route("POST", "/api/dev/seed", Access::kPublic,
          [this](const httplib::Request& req, httplib::Response& res, const Principal*) {
            DevSeed(req, res);
          });
  }
  RegisterAssets();
}

EdgeHttp::~EdgeHttp() { Stop(); }

void EdgeHttp::Route(const std::string& method, const std::string& pattern, Access access,
                     Handler handler, bool before_new_password) {
  // Closed by default: nothing that changes state goes without CSRF.
  CARELOOP_CHECK(method == "GET" || access != Access::kSession);
  auto wrapped = [this, pattern, access, before_new_password, handler = std::move(handler)](
                     const httplib::Request& req, httplib::Response& res) {
    http::CurrentRoute() = pattern;
    Guard(req, res, access, before_new_password, handler);
  };
  if (method == "GET") {
    server_->Get(pattern, wrapped);
  } else {
    CARELOOP_CHECK(method == "POST");
    server_->Post(pattern, wrapped);
  }
}

void EdgeHttp::Guard(const httplib::Request& req, httplib::Response& res, Access access,
                     bool before_new_password, const Handler& handler) {
  if (access == Access::kPublic) {
    handler(req, res, nullptr);
    return;
  }
  absl::StatusOr<Principal> who =
      accounts_->Authenticate(CookieValue(req, SessionCookieName(tls())));
  if (!who.ok()) {
    ClearSessionCookie(res);
    ReplyStatus(res, who.status());
    return;
  }
  http::CurrentActor() = absl::StrCat(who->member.agency_id, "/", who->member.user_id);
  if (access == Access::kSessionAndCsrf &&
      !ConstantTimeEquals(req.get_header_value("X-CSRF-Token"), who->csrf)) {
    ReplyError(res, 403, "this change lacks the page's CSRF token; reload the page");
    return;
  }
  // A one-time password opens only the page that replaces it.
  if (who->must_change_password && !before_new_password) {
    ReplyError(res, 403, "choose a new password first");
    return;
  }
  handler(req, res, &*who);
}

void EdgeHttp::RegisterRoutes() {
  Route("POST", "/api/login", Access::kPublic,
        [this](const httplib::Request& req, httplib::Response& res, const Principal*) {
          Login(req, res);
        });
  Route(
      "POST", "/api/logout", Access::kSessionAndCsrf,
      [this](const httplib::Request& req, httplib::Response& res, const Principal*) {
        Logout(req, res);
      },
      /*before_new_password=*/true);
  Route(
      "GET", "/api/session", Access::kSession,
      [this](const httplib::Request&, httplib::Response& res, const Principal* who) {
        Session(res, *who);
      },
      /*before_new_password=*/true);
  Route(
      "POST", "/api/password", Access::kSessionAndCsrf,
      [this](const httplib::Request& req, httplib::Response& res, const Principal*) {
        ChangePassword(req, res);
      },
      /*before_new_password=*/true);
}

void EdgeHttp::SetSessionCookie(httplib::Response& res, const std::string& token) const {
  res.set_header("Set-Cookie",
                 absl::StrCat(SessionCookieName(tls()), "=", token,
                              "; Path=/; HttpOnly; SameSite=Strict", tls() ? "; Secure" : ""));
}

void EdgeHttp::ClearSessionCookie(httplib::Response& res) const {
  res.set_header("Set-Cookie", absl::StrCat(SessionCookieName(tls()),
                                            "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
                                            tls() ? "; Secure" : ""));
}

void EdgeHttp::Login(const httplib::Request& req, httplib::Response& res) {
  if (!logins_.Allow(req.remote_addr)) {
    ReplyError(res, 429, "too many login attempts from here; wait a minute");
    return;
  }
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::string> agency = StringField(*body, "agency");
  absl::StatusOr<std::string> user = StringField(*body, "user");
  absl::StatusOr<std::string> password = StringField(*body, "password");
  absl::StatusOr<std::string> code = StringField(*body, "code");
  for (const auto* f : {&agency, &user, &password, &code}) {
    if (!f->ok()) return ReplyStatus(res, f->status());
  }
  absl::StatusOr<SessionTokens> session = accounts_->Login(*agency, *user, *password, *code);
  if (!session.ok()) return ReplyStatus(res, session.status());
  absl::StatusOr<Principal> who = accounts_->Authenticate(session->session);
  if (!who.ok()) return ReplyStatus(res, who.status());
  http::CurrentActor() = absl::StrCat(who->member.agency_id, "/", who->member.user_id);
  SetSessionCookie(res, session->session);
  Reply(res, 200, json{{"csrf", session->csrf}, {"staff", StaffJson(*who)}});
}

void EdgeHttp::Logout(const httplib::Request& req, httplib::Response& res) {
  const absl::Status s = accounts_->Logout(CookieValue(req, SessionCookieName(tls())));
  if (!s.ok()) return ReplyStatus(res, s);
  ClearSessionCookie(res);
  Reply(res, 200, json{{"logged_out", true}});
}

void EdgeHttp::Session(httplib::Response& res, const Principal& who) {
  Reply(res, 200, json{{"csrf", who.csrf}, {"staff", StaffJson(who)}});
}

void EdgeHttp::ChangePassword(const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::string> old_password = StringField(*body, "old_password");
  absl::StatusOr<std::string> new_password = StringField(*body, "new_password");
  for (const auto* f : {&old_password, &new_password}) {
    if (!f->ok()) return ReplyStatus(res, f->status());
  }
  absl::StatusOr<SessionTokens> session = accounts_->ChangePassword(
      CookieValue(req, SessionCookieName(tls())), *old_password, *new_password);
  if (!session.ok()) return ReplyStatus(res, session.status());
  SetSessionCookie(res, session->session);
  Reply(res, 200, json{{"csrf", session->csrf}});
}

void EdgeHttp::RegisterDeskRoutes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  Route("GET", "/api/inbox", Access::kSession,
        [this](const Req& req, Res& res, const Principal* who) { List(req, res, *who, false); });
  Route("GET", "/api/sent", Access::kSession,
        [this](const Req& req, Res& res, const Principal* who) { List(req, res, *who, true); });
  Route("GET", R"(/api/referrals/([^/]+)/([^/]+))", Access::kSession,
        [this](const Req& req, Res& res, const Principal* who) { OpenReferral(req, res, *who); });
  Route("POST", "/api/referrals", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { SendReferral(req, res, *who); });
  Route("POST", R"(/api/referrals/([^/]+)/([^/]+)/status)", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { MoveReferral(req, res, *who); });
  // A read, but POST: the person's record number travels in the body, never
  // in a URL.
  Route("POST", "/api/preview", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { Preview(req, res, *who); });
  Route("POST", R"(/api/referrals/([^/]+)/([^/]+)/messages)", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { PostMessage(req, res, *who); });
  Route("POST", "/api/capacity", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { ReportCapacity(req, res, *who); });
  // Consents: POST throughout, so the record number stays out of URLs.
  Route("POST", "/api/consents/find", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { FindConsents(req, res, *who); });
  Route("POST", "/api/consents", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { RecordConsent(req, res, *who); });
  Route("POST", "/api/consents/revoke", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { RevokeConsent(req, res, *who); });
  Route("POST", "/api/emergency", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { BreakGlass(req, res, *who); });
  Route("GET", "/api/agency", Access::kSession,
        [this](const Req&, Res& res, const Principal* who) { OwnAgency(res, *who); });
  Route("GET", "/api/recipients", Access::kSession,
        [this](const Req& req, Res& res, const Principal* who) { Recipients(req, res, *who); });
  // POST: the person's postal code stays out of URLs.
  Route("POST", "/api/candidates", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) { Candidates(req, res, *who); });
  Route("GET", "/api/changes", Access::kSession,
        [this](const Req&, Res& res, const Principal* who) {
          const uint64_t seq = parts_.feed ? parts_.feed->Latest(who->member.agency_id) : 0;
          Reply(res, 200, json{{"seq", seq}});
        });
}

void EdgeHttp::RegisterStaffRoutes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  Route("GET", "/api/staff", Access::kSession, [this](const Req&, Res& res, const Principal* who) {
    absl::StatusOr<std::vector<StaffMember>> all = parts_.staff->List(who->member);
    if (!all.ok()) return ReplyStatus(res, all.status());
    json out = json::array();
    for (const StaffMember& m : *all) out.push_back(MemberJson(m));
    Reply(res, 200, json{{"staff", out}});
  });
  Route("POST", "/api/staff", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) {
          ChangeStaff(req, res, *who, /*add=*/true);
        });
  Route("POST", "/api/staff/change", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) {
          ChangeStaff(req, res, *who, /*add=*/false);
        });
  Route("POST", "/api/staff/disable", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) {
          StaffAction(req, res, [&](const std::string& user, const json& body) {
            const auto it = body.find("disabled");
            if (it == body.end() || !it->is_boolean()) {
              return Done(absl::InvalidArgumentError("\"disabled\" must be true or false"));
            }
            return Done(parts_.staff->SetDisabled(who->member, user, it->get<bool>()));
          });
        });
  Route("POST", "/api/staff/remove", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) {
          StaffAction(req, res, [&](const std::string& user, const json&) {
            return Done(parts_.staff->Remove(who->member, user));
          });
        });
  Route("POST", "/api/staff/reset", Access::kSessionAndCsrf,
        [this](const Req& req, Res& res, const Principal* who) {
          StaffAction(req, res, [&](const std::string& user, const json&) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(Enrollment e, parts_.staff->ResetPassword(who->member, user));
            return EnrollmentJson(e);
          });
        });
}

void EdgeHttp::ChangeStaff(const httplib::Request& req, httplib::Response& res,
                           const Principal& who, bool add) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f = StringFields(*body, {"user", "name"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  absl::StatusOr<std::vector<std::string>> roles = StringList(*body, "roles");
  if (!roles.ok()) return ReplyStatus(res, roles.status());
  const StaffInput in{(*f)[0], (*f)[1], *roles};
  absl::StatusOr<Enrollment> e =
      add ? parts_.staff->Add(who.member, in) : parts_.staff->Change(who.member, in);
  if (!e.ok()) return ReplyStatus(res, e.status());
  Reply(res, 200, EnrollmentJson(*e));
}

void EdgeHttp::RegisterAssets() {
  for (const ConsoleAsset& asset : ConsoleAssets()) {
    const std::string path = asset.path == "index.html" ? "/" : "/" + std::string(asset.path);
    Route("GET", path, Access::kPublic,
          [asset](const httplib::Request&, httplib::Response& res, const Principal*) {
            res.set_content(std::string(asset.content), std::string(asset.media_type));
          });
  }
}

void EdgeHttp::List(const httplib::Request& req, httplib::Response& res, const Principal& who,
                    bool sent) {
  absl::StatusOr<v1::TaskStatus> status = StatusOf(req.get_param_value("status"));
  if (!status.ok()) return ReplyStatus(res, status.status());
  absl::StatusOr<v1::ListReferralsResponse> list =
      sent ? parts_.desk->Sent(who.member, *status) : parts_.desk->Inbox(who.member, *status);
  if (!list.ok()) return ReplyStatus(res, list.status());
  Reply(res, 200, ProtoJson(*list));
}

void EdgeHttp::OpenReferral(const httplib::Request& req, httplib::Response& res,
                            const Principal& who) {
  const std::string referral = absl::StrCat(req.matches[1].str(), "/", req.matches[2].str());
  absl::StatusOr<ReferralPage> page = parts_.desk->Open(who.member, referral);
  if (absl::IsPermissionDenied(page.status()) || absl::IsNotFound(page.status()) ||
      absl::IsInvalidArgument(page.status())) {
    // Another agency's referral and one that does not exist look alike.
    return ReplyError(res, 404, "no such referral");
  }
  if (!page.ok()) return ReplyStatus(res, page.status());
  json keys = json::array();
  for (const v1::AgencyKey& k : page->sender_keys) keys.push_back(ProtoJson(k));
  json authors = json::object();
  for (const auto& [agency, list] : page->author_keys) {
    json& out = authors[agency] = json::array();
    for (const v1::AgencyKey& k : list) out.push_back(ProtoJson(k));
  }
  Reply(res, 200,
        json{{"referral", ProtoJson(page->view)}, {"sender_keys", keys}, {"author_keys", authors}});
}

void EdgeHttp::SendReferral(const httplib::Request& req, httplib::Response& res,
                            const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f =
      StringFields(*body, {"mrn", "service", "reason", "priority", "recipient", "postal_code",
                           "purpose", "referral_id", "language"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  absl::StatusOr<v1::ReferralPriority> priority = PriorityOf((*f)[3]);
  if (!priority.ok()) return ReplyStatus(res, priority.status());
  absl::StatusOr<std::vector<SectionInput>> sections = SectionsOf(*body);
  if (!sections.ok()) return ReplyStatus(res, sections.status());
  NewReferral r;
  r.mrn = (*f)[0];
  r.service = (*f)[1];
  r.reason = (*f)[2];
  r.priority = *priority;
  r.recipient = (*f)[4];
  r.postal_code = (*f)[5];
  if (!(*f)[6].empty()) r.purpose = (*f)[6];
  r.referral_id = (*f)[7];
  r.language = (*f)[8];
  r.sections = std::move(*sections);
  absl::StatusOr<v1::SubmitReferralResponse> sent = parts_.desk->Send(who.member, r);
  if (!sent.ok()) return ReplyStatus(res, sent.status());
  Reply(res, 200, ProtoJson(*sent));
}

void EdgeHttp::Candidates(const httplib::Request& req, httplib::Response& res,
                          const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f =
      StringFields(*body, {"service", "postal_code", "language"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  v1::RoutingCriteria criteria;
  criteria.set_postal_code((*f)[1]);
  criteria.set_language((*f)[2]);
  absl::StatusOr<std::vector<Desk::Ranked>> ranked =
      parts_.desk->Candidates(who.member, (*f)[0], criteria);
  if (!ranked.ok()) return ReplyStatus(res, ranked.status());
  json out = json::array();
  for (const Desk::Ranked& r : *ranked) {
    json c = ProtoJson(r.candidate);
    c["name"] = r.name;
    out.push_back(std::move(c));
  }
  Reply(res, 200, json{{"candidates", out}});
}

void EdgeHttp::BreakGlass(const httplib::Request& req, httplib::Response& res,
                          const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f = StringFields(*body, {"mrn", "reason"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  absl::StatusOr<std::vector<std::string>> categories = StringList(*body, "categories");
  if (!categories.ok()) return ReplyStatus(res, categories.status());
  const auto minutes = body->find("minutes");
  if (minutes == body->end() || !minutes->is_number_integer() || minutes->get<int64_t>() < 1 ||
      minutes->get<int64_t>() > int64_t{24} * 60) {
    return ReplyError(res, 400, "\"minutes\" is a whole number from 1 to 1440");
  }
  absl::StatusOr<Desk::EmergencyAccess> access = parts_.desk->BreakGlass(
      who.member, (*f)[0], *categories, (*f)[1], absl::Minutes(minutes->get<int64_t>()));
  if (!access.ok()) return ReplyStatus(res, access.status());
  Reply(res, 200,
        json{{"break_glass_id", access->id},
             {"until_unix_nanos", std::to_string(access->until_unix_nanos)}});
}

void EdgeHttp::MoveReferral(const httplib::Request& req, httplib::Response& res,
                            const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f =
      StringFields(*body, {"status", "reason_code", "reason_text", "provided", "enrolment"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  absl::StatusOr<v1::TaskStatus> status = StatusOf((*f)[0]);
  if (!status.ok()) return ReplyStatus(res, status.status());
  StatusMove m;
  m.referral = absl::StrCat(req.matches[1].str(), "/", req.matches[2].str());
  m.status = *status;
  m.reason_code = (*f)[1];
  m.reason_text = (*f)[2];
  m.provided = (*f)[3];
  m.enrolment_status = (*f)[4];
  absl::StatusOr<v1::Receipt> receipt = parts_.desk->Move(who.member, m);
  if (!receipt.ok()) return ReplyStatus(res, receipt.status());
  v1::EventHeader header;
  CARELOOP_CHECK(header.ParseFromString(receipt->header_bytes()));
  Reply(res, 200, json{{"seq", header.seq()}});
}

void EdgeHttp::Recipients(const httplib::Request& req, httplib::Response& res,
                          const Principal& who) {
  absl::StatusOr<std::vector<v1::AgencyRecord>> found =
      parts_.desk->Recipients(who.member, req.get_param_value("service"));
  if (!found.ok()) return ReplyStatus(res, found.status());
  json out = json::array();
  for (const v1::AgencyRecord& a : *found) {
    out.push_back(json{{"agency_id", a.agency_id()},
                       {"name", a.profile().display_name()},
                       {"services", a.profile().services()}});
  }
  Reply(res, 200, json{{"agencies", out}});
}

void EdgeHttp::Preview(const httplib::Request& req, httplib::Response& res, const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f = StringFields(*body, {"mrn", "recipient", "purpose"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  const auto it = body->find("categories");
  if (it == body->end() || !it->is_array()) {
    return ReplyError(res, 400, "\"categories\" must be a list");
  }
  std::vector<std::string> categories;
  for (const json& c : *it) {
    if (!c.is_string()) return ReplyError(res, 400, "each category is a string");
    categories.push_back(c.get<std::string>());
  }
  absl::StatusOr<v1::PreviewDisclosureResponse> preview = parts_.desk->Preview(
      who.member, (*f)[0], (*f)[1], (*f)[2].empty() ? "care-coordination" : (*f)[2], categories);
  if (!preview.ok()) return ReplyStatus(res, preview.status());
  Reply(res, 200, ProtoJson(*preview));
}

void EdgeHttp::PostMessage(const httplib::Request& req, httplib::Response& res,
                           const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f = StringFields(*body, {"category", "text"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  const std::string referral = absl::StrCat(req.matches[1].str(), "/", req.matches[2].str());
  absl::StatusOr<v1::PostMessageResponse> posted =
      parts_.desk->Message(who.member, referral, (*f)[0], (*f)[1]);
  if (!posted.ok()) return ReplyStatus(res, posted.status());
  json withheld = json::array();
  for (const v1::WithheldSection& w : posted->withheld()) withheld.push_back(ProtoJson(w));
  Reply(res, 200, json{{"withheld", withheld}});
}

void EdgeHttp::ReportCapacity(const httplib::Request& req, httplib::Response& res,
                              const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::string> service = StringField(*body, "service");
  if (!service.ok()) return ReplyStatus(res, service.status());
  const auto slots = body->find("open_slots");
  if (slots == body->end() || !slots->is_number_unsigned() || slots->get<uint64_t>() > 100000) {
    return ReplyError(res, 400, "\"open_slots\" is a whole number from 0 to 100000");
  }
  absl::StatusOr<v1::Receipt> receipt =
      parts_.desk->ReportCapacity(who.member, *service, slots->get<uint32_t>());
  if (!receipt.ok()) return ReplyStatus(res, receipt.status());
  Reply(res, 200, json{{"reported", true}});
}

void EdgeHttp::OwnAgency(httplib::Response& res, const Principal& who) {
  absl::StatusOr<v1::AgencyRecord> a = parts_.desk->OwnAgency(who.member);
  if (!a.ok()) return ReplyStatus(res, a.status());
  json capacity = json::array();
  for (const v1::CapacityEntry& c : a->capacity()) {
    capacity.push_back(json{{"service", c.service()},
                            {"open_now", directory::OpenSlots(c)},
                            {"reported", c.open_slots()}});
  }
  // Who the hub lists as the agency's staff (the staff page shows it
  // beside the edge's accounts).
  json actors = json::array();
  for (const v1::ActorEntry& e : a->actors()) {
    actors.push_back(json{{"user_id", e.user_id()},
                          {"display_name", e.display_name()},
                          {"roles", e.roles()},
                          {"inactive", e.inactive()}});
  }
  Reply(res, 200,
        json{{"agency_id", a->agency_id()},
             {"name", a->profile().display_name()},
             {"roles", a->profile().roles()},
             {"services", a->profile().services()},
             {"capacity", capacity},
             {"actors", actors}});
}

void EdgeHttp::FindConsents(const httplib::Request& req, httplib::Response& res,
                            const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::string> mrn = StringField(*body, "mrn");
  if (!mrn.ok()) return ReplyStatus(res, mrn.status());
  absl::StatusOr<v1::ListConsentsResponse> list = parts_.desk->Consents(who.member, *mrn);
  if (!list.ok()) return ReplyStatus(res, list.status());
  Reply(res, 200, ProtoJson(*list));
}

void EdgeHttp::RecordConsent(const httplib::Request& req, httplib::Response& res,
                             const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f =
      StringFields(*body, {"mrn", "until", "evidence_sha256", "evidence_media_type"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  NewConsent c;
  c.mrn = (*f)[0];
  for (auto [name, out] :
       {std::pair{"categories", &c.categories}, std::pair{"recipients", &c.recipients},
        std::pair{"purposes", &c.purposes}}) {
    absl::StatusOr<std::vector<std::string>> list = StringList(*body, name);
    if (!list.ok()) return ReplyStatus(res, list.status());
    *out = std::move(*list);
  }
  c.network = body->value("network", false) == true;
  absl::StatusOr<int64_t> until = http::DayBound((*f)[1], /*end=*/true);
  if (!until.ok()) return ReplyStatus(res, until.status());
  c.until_unix_nanos = *until;
  const std::string& hex = (*f)[2];
  if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return ReplyError(res, 400, "evidence_sha256 is the form's SHA-256 in lowercase hex");
  }
  c.evidence_sha256 = absl::HexStringToBytes(hex);
  c.evidence_media_type = (*f)[3].empty() ? "application/pdf" : (*f)[3];
  absl::StatusOr<std::string> id = parts_.desk->RecordConsent(who.member, c);
  if (!id.ok()) return ReplyStatus(res, id.status());
  Reply(res, 200, json{{"consent_id", *id}});
}

void EdgeHttp::RevokeConsent(const httplib::Request& req, httplib::Response& res,
                             const Principal& who) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<std::vector<std::string>> f = StringFields(*body, {"consent_id", "reason"});
  if (!f.ok()) return ReplyStatus(res, f.status());
  const absl::Status s = parts_.desk->RevokeConsent(who.member, (*f)[0], (*f)[1]);
  if (!s.ok()) return ReplyStatus(res, s);
  Reply(res, 200, json{{"revoked", true}});
}

void EdgeHttp::DevSeed(const httplib::Request& req, httplib::Response& res) {
  if (!ConstantTimeEquals(req.get_header_value("X-Careloop-Dev-Token"), options_.dev_seed_token)) {
    return ReplyError(res, 403, "the dev seed needs the token from the hub's data dir");
  }
  absl::StatusOr<std::string> logins = parts_.dev_seed();
  if (!logins.ok()) return ReplyStatus(res, logins.status());
  res.status = 200;
  res.set_content(*logins, "application/json");
}

absl::Status EdgeHttp::Start(const std::function<void(int port)>& before_serving) {
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError("the edge's TLS certificate or key could not be loaded");
  }
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
  } else {
    port_ = server_->bind_to_port(options_.host, options_.port) ? options_.port : -1;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("the edge cannot listen on ", options_.host, ":", options_.port));
  }
  if (before_serving) before_serving(port_);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void EdgeHttp::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace careloop::edge
