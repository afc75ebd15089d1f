// The compliance desk's and the figures' routes (privacy_desk.h). Anything
// that names a person travels in a POST body, never in a URL.
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "services/audit/bundle.h"
#include "services/edge/edge_http.h"
#include "services/edge/http_json.h"

namespace careloop::edge {
namespace {

using http::BodyOf;
using http::DayBound;
using http::json;
using http::ProtoJson;
using http::Reply;
using http::ReplyStatus;
using http::StringField;
using http::StringFields;

absl::StatusOr<bool> BoolField(const json& body, const char* name, bool absent) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return absent;
  if (!it->is_boolean())
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" must be true or false"));
  return it->get<bool>();
}

json IntegrityJson(const Integrity& i) {
  return json{{"known", i.known},
              {"ok", i.ok},
              {"problem", i.problem},
              {"log_id", i.log_id},
              {"tree_size", i.tree_size},
              {"signed_unix_nanos", i.signed_unix_nanos},
              {"checked_unix_nanos", i.checked_unix_nanos}};
}

json BundleReportJson(const audit::BundleReport& r) {
  return json{{"ok", r.ok},
              {"bad_line", r.bad_line},
              {"bad_seq", r.bad_seq},
              {"problem", r.problem},
              {"events", r.events},
              {"envelopes", r.envelopes},
              {"tree_size", r.tree_size},
              {"query", r.query}};
}

// Runs `answer` on the request's JSON body and replies with what it gives.
void WithBody(const httplib::Request& req, httplib::Response& res,
              const std::function<absl::StatusOr<json>(const json& body)>& answer) {
  absl::StatusOr<json> body = BodyOf(req);
  if (!body.ok()) return ReplyStatus(res, body.status());
  absl::StatusOr<json> out = answer(*body);
  if (!out.ok()) return ReplyStatus(res, out.status());
  Reply(res, 200, *out);
}

}  // namespace

void EdgeHttp::RegisterPrivacyRoutes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  PrivacyDesk* desk = parts_.privacy;
  Route("POST", "/api/privacy/person", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(auto f, StringFields(body, {"agency", "mrn"}));
            ASSIGN_OR_RETURN(std::string subject, desk->FindPerson(who->member, f[0], f[1]));
            return json{{"subject_id", subject}};
          });
        });
  Route("POST", "/api/privacy/report", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(auto f, StringFields(body, {"subject_id", "from", "to"}));
            ASSIGN_OR_RETURN(int64_t from, DayBound(f[1], false));
            ASSIGN_OR_RETURN(int64_t to, DayBound(f[2], true));
            ASSIGN_OR_RETURN(bool hipaa, BoolField(body, "hipaa", false));
            ASSIGN_OR_RETURN(v1::DisclosureReportResponse r,
                             desk->Report(who->member, f[0], from, to, hipaa));
            return ProtoJson(r);
          });
        });
  Route("POST", "/api/privacy/trail", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(std::string subject, StringField(body, "subject_id"));
            ASSIGN_OR_RETURN(v1::TrailResponse t, desk->Trail(who->member, subject));
            return ProtoJson(t);
          });
        });
  Route("POST", "/api/privacy/access", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(auto f, StringFields(body, {"subject_id", "referral", "agency",
                                                         "actor", "from", "to"}));
            v1::AccessRequest a;
            a.set_subject_id(f[0]);
            a.set_referral(f[1]);
            a.set_agency(f[2]);
            a.set_actor(f[3]);
            ASSIGN_OR_RETURN(int64_t from, DayBound(f[4], false));
            ASSIGN_OR_RETURN(int64_t to, DayBound(f[5], true));
            a.set_from_unix_nanos(from);
            a.set_to_unix_nanos(to);
            ASSIGN_OR_RETURN(v1::AccessResponse r, desk->Access(who->member, a));
            return ProtoJson(r);
          });
        });
  Route("GET", "/api/privacy/break-glass", Access::kSession,
        [desk](const Req& req, Res& res, const Principal* who) {
          absl::StatusOr<v1::ListBreakGlassResponse> r =
              desk->BreakGlass(who->member, req.get_param_value("all") == "1");
          if (!r.ok()) return ReplyStatus(res, r.status());
          Reply(res, 200, ProtoJson(*r));
        });
  Route("POST", "/api/privacy/break-glass/review", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(auto f, StringFields(body, {"id", "notes"}));
            const auto it = body.find("appropriate");
            if (it == body.end() || !it->is_boolean())
              return absl::InvalidArgumentError("\"appropriate\" must be true or false");
            RETURN_IF_ERROR(desk->Review(who->member, f[0], it->get<bool>(), f[1]));
            return json{{"done", true}};
          });
        });
  Route("POST", "/api/privacy/export", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          absl::StatusOr<json> body = BodyOf(req);
          if (!body.ok()) return ReplyStatus(res, body.status());
          absl::StatusOr<std::vector<std::string>> f =
              StringFields(*body, {"subject_id", "referral"});
          if (!f.ok()) return ReplyStatus(res, f.status());
          v1::ExportRequest x;
          x.set_subject_id((*f)[0]);
          x.set_referral((*f)[1]);
          x.set_include_payloads(true);
          absl::StatusOr<v1::ExportResponse> bundle = desk->Export(who->member, x);
          if (!bundle.ok()) return ReplyStatus(res, bundle.status());
          res.status = 200;
          res.set_header("Content-Disposition", "attachment; filename=\"careloop-bundle.jsonl\"");
          res.set_content(audit::BundleToJsonLines(*bundle), "application/x-ndjson");
        });
  Route("POST", "/api/privacy/verify", Access::kSessionAndCsrf,
        [desk](const Req& req, Res& res, const Principal* who) {
          WithBody(req, res, [&](const json& body) -> absl::StatusOr<json> {
            ASSIGN_OR_RETURN(std::string bundle, StringField(body, "bundle"));
            ASSIGN_OR_RETURN(audit::BundleReport r, desk->VerifyBundle(who->member, bundle));
            return BundleReportJson(r);
          });
        });
  Route("GET", "/api/integrity", Access::kSession,
        [desk](const Req&, Res& res, const Principal* who) {
          absl::StatusOr<Integrity> i = desk->CheckIntegrity(who->member);
          if (!i.ok()) return ReplyStatus(res, i.status());
          Reply(res, 200, IntegrityJson(*i));
        });
  Route("GET", "/api/figures", Access::kSession,
        [desk](const Req& req, Res& res, const Principal* who) {
          v1::FiguresRequest f;
          absl::StatusOr<int64_t> from = DayBound(req.get_param_value("from"), false);
          absl::StatusOr<int64_t> to = DayBound(req.get_param_value("to"), true);
          if (!from.ok()) return ReplyStatus(res, from.status());
          if (!to.ok()) return ReplyStatus(res, to.status());
          f.set_from_unix_nanos(*from);
          f.set_to_unix_nanos(*to);
          f.set_group_by(req.get_param_value("by"));
          absl::StatusOr<v1::FiguresResponse> r = desk->Figures(who->member, f);
          if (!r.ok()) return ReplyStatus(res, r.status());
          Reply(res, 200, ProtoJson(*r));
        });
}

}  // namespace careloop::edge
