// The edge's HTTP adapter (DESIGN.md, "The agency edge"): JSON over HTTP(S)
// for the console, translated to the edge's core. cpp-httplib serves each
// connection on a pool thread, so no route may wait on the hub for long.
//
// Closed by default: each route is registered with the access it needs
// (public, a session, or a session and its CSRF token), and a route that
// changes anything cannot be registered without the CSRF check. Every
// response carries the security headers; request bodies are JSON, bounded
// in size; each client address is rate-limited, logins more tightly. Log
// lines name the method, the path (never a query string), the status and
// the staff member's agency and user id: no PHI.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/clock.h"
#include "services/edge/change_feed.h"
#include "services/edge/desk.h"
#include "services/edge/privacy_desk.h"
#include "services/edge/rate_limiter.h"
#include "services/edge/staff_accounts.h"
#include "services/edge/staff_admin.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace careloop::edge {

namespace fhir {
class FhirApi;
}  // namespace fhir
class SmartAuth;

struct EdgeHttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: a free port (see EdgeHttp::port())
  // Both set: HTTPS with these PEM files, and cookies marked Secure.
  std::string tls_cert_file;
  std::string tls_key_file;
  size_t max_body_bytes = 1 << 20;
  size_t worker_threads = 8;
  // Per client address (staff behind one NAT share it: a console polls
  // about 30 times a minute).
  double requests_per_minute = 3000;
  double logins_per_minute = 10;  // per client address
  // Dev mode only: POST /api/dev/seed answers a request carrying this token
  // (careloop demo seed reads it from the data dir). Empty: no such route.
  std::string dev_seed_token;
};

// What the edge serves beside staff accounts; each may be null (its routes
// are then not registered).
struct EdgeParts {
  StaffAccounts* accounts = nullptr;
  Desk* desk = nullptr;
  ChangeFeed* feed = nullptr;
  StaffAdmin* staff = nullptr;     // an agency admin's staff pages
  PrivacyDesk* privacy = nullptr;  // the compliance desk and the figures
  // The FHIR R4 API and its token endpoint (both or neither).
  fhir::FhirApi* fhir = nullptr;
  SmartAuth* smart = nullptr;
  // The dev seed (careloop demo seed): returns the logins it made as JSON.
  std::function<absl::StatusOr<std::string>()> dev_seed;
};

// The name of the session cookie (with the __Host- prefix over HTTPS).
std::string SessionCookieName(bool tls);

class EdgeHttp {
 public:
  EdgeHttp(EdgeHttpOptions options, StaffAccounts* accounts, Clock* clock);
  EdgeHttp(EdgeHttpOptions options, EdgeParts parts, Clock* clock);
  ~EdgeHttp();
  EdgeHttp(const EdgeHttp&) = delete;
  EdgeHttp& operator=(const EdgeHttp&) = delete;

  // Binds and starts serving on a thread of its own; `before_serving` is
  // told the port bound before the first request can arrive.
  absl::Status Start(const std::function<void(int port)>& before_serving = {});
  // Stops accepting and waits for the serving thread.
  void Stop();
  int port() const { return port_; }
  bool tls() const { return !options_.tls_cert_file.empty(); }

 private:
  enum class Access { kPublic, kSession, kSessionAndCsrf };
  using Handler =
      std::function<void(const httplib::Request&, httplib::Response&, const Principal* who)>;
  // `before_new_password`: the route also answers a session opened with a
  // one-time password (which must be replaced before anything else).
  void Route(const std::string& method, const std::string& pattern, Access access, Handler handler,
             bool before_new_password = false);
  void Guard(const httplib::Request& req, httplib::Response& res, Access access,
             bool before_new_password, const Handler& handler);
  void RegisterRoutes();
  void RegisterDeskRoutes();
  void RegisterStaffRoutes();
  void RegisterPrivacyRoutes();  // privacy_http.cc
  void RegisterFhirRoutes();     // fhir_http.cc
  void RegisterAssets();

  void Login(const httplib::Request& req, httplib::Response& res);
  void Logout(const httplib::Request& req, httplib::Response& res);
  void Session(httplib::Response& res, const Principal& who);
  void ChangePassword(const httplib::Request& req, httplib::Response& res);
  void List(const httplib::Request& req, httplib::Response& res, const Principal& who, bool sent);
  void OpenReferral(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void SendReferral(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void MoveReferral(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void Recipients(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void Candidates(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void BreakGlass(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void Preview(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void PostMessage(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void ReportCapacity(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void OwnAgency(httplib::Response& res, const Principal& who);
  void FindConsents(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void RecordConsent(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void RevokeConsent(const httplib::Request& req, httplib::Response& res, const Principal& who);
  void DevSeed(const httplib::Request& req, httplib::Response& res);
  void ChangeStaff(const httplib::Request& req, httplib::Response& res, const Principal& who,
                   bool add);

  void SetSessionCookie(httplib::Response& res, const std::string& token) const;
  void ClearSessionCookie(httplib::Response& res) const;

  EdgeHttpOptions options_;
  StaffAccounts* accounts_;
  EdgeParts parts_;
  RateLimiter requests_;
  RateLimiter logins_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace careloop::edge
