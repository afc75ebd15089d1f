// SMART Backend Services at the edge (DESIGN.md, "The agency edge"): how a
// system (an EHR, a community agency's case-management tool) authenticates
// to the FHIR API as one agency the edge serves.
//
// A system is registered by the edge's operator (careloop edge fhir-client)
// with its client id, the agency it acts for, its public keys (a JWKS: EC
// P-384 for ES384, RSA of 2048 bits or more for RS384) and the scopes it may
// be granted. It asks the token endpoint for an access token with the OAuth
// 2.0 client_credentials grant and a private_key_jwt client assertion signed
// with one of its keys (iss = sub = client id, aud = the token endpoint's
// URL, exp at most five minutes ahead, a jti never used before). Access
// tokens are random, kept only as their SHA-256, and live five minutes.
//
// A system acts for its agency; the person acting is named in each request
// (fhir_api.h) and must be a directory actor of that agency.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace careloop::edge {

// What a token lets a system do, per resource type: SMART v2 letters
// (c create, r read, u update, d delete, s search); v1's read is "rs",
// write "cud". "*" stands for every resource type.
class FhirScopes {
 public:
  // "system/Task.rs system/*.read ..." ; INVALID_ARGUMENT naming the first
  // scope that is not a system scope of this form.
  static absl::StatusOr<FhirScopes> Parse(const std::string& scopes);
  bool Allows(const std::string& type, char op) const;
  // The scopes of `this` also in `limit`, as granted.
  FhirScopes Within(const FhirScopes& limit) const;
  bool empty() const { return grants_.empty(); }
  std::string ToString() const;

 private:
  std::map<std::string, std::set<char>> grants_;  // type or "*" -> ops
};

struct FhirClient {
  std::string client_id;  // [A-Za-z0-9._-], 1 to 64
  std::string agency_id;
  std::string jwks;  // a JSON Web Key Set, as registered
  std::string scope;
};

// Who a valid access token is.
struct FhirSystem {
  std::string client_id;
  std::string agency_id;
  FhirScopes scopes;
};

struct SmartOptions {
  // Where registered clients are kept: one <client id>.json file each.
  std::string clients_dir;
  // The token endpoint's URL as clients address it: the assertion's aud.
  std::string token_url;
  absl::Duration token_lifetime = absl::Minutes(5);
  absl::Duration max_assertion_lifetime = absl::Minutes(5);
  absl::Duration clock_skew = absl::Minutes(1);
};

// The token endpoint's error, as RFC 6749 §5.2 names it.
struct OAuthError {
  int http_status = 400;
  std::string error;  // invalid_request, invalid_client, invalid_scope, ...
  std::string description;
};

struct AccessToken {
  std::string token;
  std::string scope;
  int64_t expires_in_seconds = 0;
};

// Registration (the CLI, with the edge running or not): checks the client
// and writes it atomically; replaces an earlier registration of the id.
absl::Status RegisterFhirClient(const std::string& clients_dir, const FhirClient& client);
absl::Status RemoveFhirClient(const std::string& clients_dir, const std::string& client_id);
absl::StatusOr<std::vector<FhirClient>> ListFhirClients(const std::string& clients_dir);

class SmartAuth {
 public:
  SmartAuth(SmartOptions options, Clock* clock);

  // The token endpoint: the form fields of a client_credentials request.
  // Either a token, or the OAuth error to answer with.
  struct Issued {
    AccessToken token;
    OAuthError error;
    bool ok = false;
  };
  Issued Token(const std::map<std::string, std::string>& form);

  // The system an "Authorization: Bearer <token>" header belongs to;
  // UNAUTHENTICATED when missing, unknown or expired.
  absl::StatusOr<FhirSystem> Authenticate(const std::string& authorization);

  const SmartOptions& options() const { return options_; }
  // Before serving only (the edge's port known once bound).
  void set_token_url(std::string url) { options_.token_url = std::move(url); }

 private:
  struct Held {
    FhirSystem system;
    absl::Time expires;
  };
  absl::StatusOr<FhirClient> Load(const std::string& client_id) const;
  void ForgetExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SmartOptions options_;
  Clock* clock_;
  absl::Mutex mu_;
  std::map<std::string, Held> tokens_ ABSL_GUARDED_BY(mu_);          // SHA-256 of the token
  std::map<std::string, absl::Time> used_jti_ ABSL_GUARDED_BY(mu_);  // client/jti -> exp
};

// Verifies a compact JWS (ES384 or RS384) with one key of `jwks` (by its
// kid when the header names one) and returns its payload as JSON text.
// Exposed for the tests.
absl::StatusOr<std::string> VerifyJws(const std::string& jws, const std::string& jwks);

}  // namespace careloop::edge
