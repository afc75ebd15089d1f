#include "services/edge/smart_auth.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/crypto.h"
#include "base/file.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/status.h"

namespace careloop::edge {
namespace {

using json = nlohmann::json;

constexpr char kAssertionType[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool ValidClientId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

absl::StatusOr<std::string> B64Url(const json& v, const char* what) {
  std::string out;
  if (!v.is_string() || !absl::WebSafeBase64Unescape(v.get<std::string>(), &out) || out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the key's \"", what, "\" is not base64url"));
  }
  return out;
}

// An EVP_PKEY from a public JWK: EC P-384 or RSA of at least 2048 bits.
absl::StatusOr<Pkey> KeyFromJwk(const json& jwk) {
  const std::string kty = jwk.value("kty", "");
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  std::string pub;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(nullptr, BN_free), e(nullptr, BN_free);
  const char* type = nullptr;
  if (kty == "EC") {
    if (jwk.value("crv", "") != "P-384") return absl::InvalidArgumentError("EC keys are P-384");
    ASSIGN_OR_RETURN(std::string x, B64Url(jwk.value("x", json()), "x"));
    ASSIGN_OR_RETURN(std::string y, B64Url(jwk.value("y", json()), "y"));
    if (x.size() != 48 || y.size() != 48)
      return absl::InvalidArgumentError("a P-384 key's x and y are 48 bytes");
    pub = absl::StrCat("\x04", x, y);
    type = "EC";
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "P-384", 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size());
  } else if (kty == "RSA") {
    ASSIGN_OR_RETURN(std::string nb, B64Url(jwk.value("n", json()), "n"));
    ASSIGN_OR_RETURN(std::string eb, B64Url(jwk.value("e", json()), "e"));
    n.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()), nb.size(), nullptr));
    e.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()), eb.size(), nullptr));
    if (!n || !e || BN_num_bits(n.get()) < 2048)
      return absl::InvalidArgumentError("RSA keys have at least 2048 bits");
    type = "RSA";
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  } else {
    return absl::InvalidArgumentError("a key's kty is EC (P-384) or RSA");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InvalidArgumentError("the key is not a valid public key");
  }
  Pkey out(key);
  if (kty == "EC") {
    // The point must be on the curve.
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> check(
        EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr), EVP_PKEY_CTX_free);
    if (!check || EVP_PKEY_public_check(check.get()) != 1)
      return absl::InvalidArgumentError("the EC key is not a point of P-384");
  }
  return out;
}

// JWS ES384 signatures are r || s (48 bytes each); OpenSSL verifies DER.
absl::StatusOr<std::string> EcdsaDer(absl::string_view raw) {
  if (raw.size() != 96) return absl::UnauthenticatedError("an ES384 signature is 96 bytes");
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 48, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 48, 48, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return absl::InternalError("ECDSA_SIG");
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return absl::InternalError("i2d_ECDSA_SIG");
  std::string out(reinterpret_cast<char*>(der), len);
  OPENSSL_free(der);
  return out;
}

bool VerifyWith(EVP_PKEY* key, absl::string_view signed_part, absl::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(signed_part.data()),
                          signed_part.size()) == 1;
}

// The keys of a JWKS, checked; INVALID_ARGUMENT when none is usable.
absl::StatusOr<json> KeysOf(const std::string& jwks) {
  const json set = json::parse(jwks, nullptr, /*allow_exceptions=*/false);
  if (set.is_discarded() || !set.is_object() || !set.contains("keys") || !set["keys"].is_array() ||
      set["keys"].empty()) {
    return absl::InvalidArgumentError("a JWKS is a JSON object with a non-empty \"keys\" list");
  }
  for (const json& k : set["keys"]) {
    if (!k.is_object()) return absl::InvalidArgumentError("each JWKS key is an object");
    RETURN_IF_ERROR(KeyFromJwk(k).status());
    if (k.contains("d") || k.contains("p"))
      return absl::InvalidArgumentError("register public keys only (the JWKS holds a private key)");
  }
  return set["keys"];
}

absl::StatusOr<std::string> ClientPath(const std::string& dir, const std::string& client_id) {
  if (!ValidClientId(client_id))
    return absl::InvalidArgumentError("a client id is 1 to 64 of [A-Za-z0-9._-]");
  return absl::StrCat(dir, "/", client_id, ".json");
}

OAuthError Refuse(int status, const char* error, std::string description) {
  return OAuthError{status, error, std::move(description)};
}

}  // namespace

absl::StatusOr<FhirScopes> FhirScopes::Parse(const std::string& scopes) {
  FhirScopes out;
  for (absl::string_view s : absl::StrSplit(scopes, ' ', absl::SkipEmpty())) {
    absl::string_view rest = s;
    const size_t dot = rest.rfind('.');
    if (!absl::ConsumePrefix(&rest, "system/") || dot == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("scope ", s, " is not system/<type>.<read|write|*|cruds>"));
    }
    const std::string type(rest.substr(0, rest.find('.')));
    const absl::string_view ops = s.substr(dot + 1);
    std::string letters;
    if (ops == "read") {
      letters = "rs";
    } else if (ops == "write") {
      letters = "cud";
    } else if (ops == "*") {
      letters = "cruds";
    } else {
      letters = std::string(ops);
    }
    if (type.empty() || letters.empty() ||
        letters.find_first_not_of("cruds") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("scope ", s, " is not system/<type>.<read|write|*|cruds>"));
    }
    out.grants_[type].insert(letters.begin(), letters.end());
  }
  return out;
}

bool FhirScopes::Allows(const std::string& type, char op) const {
  for (const std::string& t : {type, std::string("*")}) {
    auto it = grants_.find(t);
    if (it != grants_.end() && it->second.count(op) > 0) return true;
  }
  return false;
}

FhirScopes FhirScopes::Within(const FhirScopes& limit) const {
  FhirScopes out;
  for (const auto& [type, ops] : grants_) {
    for (char op : ops) {
      if (type != "*") {
        if (limit.Allows(type, op)) out.grants_[type].insert(op);
        continue;
      }
      // Every type: what the limit grants of each.
      for (const auto& [limit_type, limit_ops] : limit.grants_) {
        if (limit_ops.count(op) > 0) out.grants_[limit_type].insert(op);
      }
    }
  }
  return out;
}

std::string FhirScopes::ToString() const {
  std::vector<std::string> parts;
  for (const auto& [type, ops] : grants_) {
    std::string letters;
    for (char c : std::string("cruds")) {
      if (ops.count(c) > 0) letters += c;
    }
    parts.push_back(absl::StrCat("system/", type, ".", letters));
  }
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<std::string> VerifyJws(const std::string& jws, const std::string& jwks) {
  const std::vector<std::string> parts = absl::StrSplit(jws, '.');
  if (parts.size() != 3) return absl::UnauthenticatedError("the assertion is not a compact JWS");
  std::string header_text, payload, sig;
  if (!absl::WebSafeBase64Unescape(parts[0], &header_text) ||
      !absl::WebSafeBase64Unescape(parts[1], &payload) ||
      !absl::WebSafeBase64Unescape(parts[2], &sig)) {
    return absl::UnauthenticatedError("the assertion is not base64url");
  }
  const json header = json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return absl::UnauthenticatedError("the assertion's header is not JSON");
  const std::string alg = header.value("alg", "");
  if (alg != "ES384" && alg != "RS384")
    return absl::UnauthenticatedError("the assertion is signed with ES384 or RS384");
  const std::string kid = header.value("kid", "");
  ASSIGN_OR_RETURN(json keys, KeysOf(jwks));
  const std::string signed_part = absl::StrCat(parts[0], ".", parts[1]);
  std::string der;
  if (alg == "ES384") {
    ASSIGN_OR_RETURN(der, EcdsaDer(sig));
  }
  for (const json& k : keys) {
    if (!kid.empty() && k.value("kid", "") != kid) continue;
    if ((alg == "ES384") != (k.value("kty", "") == "EC")) continue;
    ASSIGN_OR_RETURN(Pkey key, KeyFromJwk(k));
    if (VerifyWith(key.get(), signed_part, alg == "ES384" ? der : sig)) return payload;
  }
  return absl::UnauthenticatedError("the assertion's signature does not verify");
}

absl::Status RegisterFhirClient(const std::string& clients_dir, const FhirClient& client) {
  ASSIGN_OR_RETURN(std::string path, ClientPath(clients_dir, client.client_id));
  if (client.agency_id.empty()) return absl::InvalidArgumentError("name the agency it acts for");
  RETURN_IF_ERROR(KeysOf(client.jwks).status());
  ASSIGN_OR_RETURN(FhirScopes scopes, FhirScopes::Parse(client.scope));
  if (scopes.empty()) return absl::InvalidArgumentError("give the scopes it may be granted");
  std::error_code ec;
  std::filesystem::create_directories(clients_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", clients_dir));
  const json j{{"client_id", client.client_id},
               {"agency_id", client.agency_id},
               {"jwks", json::parse(client.jwks)},
               {"scope", scopes.ToString()}};
  return WriteFileAtomically(path, j.dump(1), 0600);
}

absl::Status RemoveFhirClient(const std::string& clients_dir, const std::string& client_id) {
  ASSIGN_OR_RETURN(std::string path, ClientPath(clients_dir, client_id));
  std::error_code ec;
  if (!std::filesystem::remove(path, ec) || ec)
    return absl::NotFoundError(absl::StrCat("no client ", client_id));
  return absl::OkStatus();
}

namespace {

// A registration file: its fields, each of its type.
absl::StatusOr<FhirClient> ClientOf(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("not a JSON object");
  for (const char* field : {"client_id", "agency_id", "scope"}) {
    if (!j.contains(field) || !j[field].is_string())
      return absl::DataLossError(absl::StrCat("'", field, "' is not a string"));
  }
  if (!j.contains("jwks") || !j["jwks"].is_object())
    return absl::DataLossError("'jwks' is not an object");
  return FhirClient{j["client_id"].get<std::string>(), j["agency_id"].get<std::string>(),
                    j["jwks"].dump(), j["scope"].get<std::string>()};
}

}  // namespace

absl::StatusOr<std::vector<FhirClient>> ListFhirClients(const std::string& clients_dir) {
  std::vector<FhirClient> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(clients_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::EndsWith(name, ".json")) continue;
    ASSIGN_OR_RETURN(std::string text, ReadFile(entry.path().string()));
    absl::StatusOr<FhirClient> client = ClientOf(text);
    if (!client.ok()) {
      // Listed, not skipped: an operator must see a registration the edge
      // cannot use.
      return absl::DataLossError(
          absl::StrCat("FHIR client file ", name, ": ", client.status().message()));
    }
    out.push_back(*std::move(client));
  }
  std::sort(out.begin(), out.end(),
            [](const FhirClient& a, const FhirClient& b) { return a.client_id < b.client_id; });
  return out;
}

SmartAuth::SmartAuth(SmartOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {
  CARELOOP_CHECK(clock_ != nullptr && !options_.token_url.empty());
}

absl::StatusOr<FhirClient> SmartAuth::Load(const std::string& client_id) const {
  ASSIGN_OR_RETURN(std::string path, ClientPath(options_.clients_dir, client_id));
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return absl::NotFoundError("unknown client");
  absl::StatusOr<FhirClient> client = ClientOf(*text);
  if (!client.ok()) {
    log::Error("fhir_client_unreadable", {{"client", client_id}});
    return absl::NotFoundError("unknown client");
  }
  return client;
}

void SmartAuth::ForgetExpired(absl::Time now) {
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    it = it->second.expires <= now ? tokens_.erase(it) : std::next(it);
  }
  for (auto it = used_jti_.begin(); it != used_jti_.end();) {
    it = it->second + options_.clock_skew <= now ? used_jti_.erase(it) : std::next(it);
  }
}

SmartAuth::Issued SmartAuth::Token(const std::map<std::string, std::string>& form) {
  Issued out;
  auto field = [&form](const char* name) {
    auto it = form.find(name);
    return it == form.end() ? std::string() : it->second;
  };
  if (field("grant_type") != "client_credentials") {
    out.error = Refuse(400, "unsupported_grant_type", "grant_type is client_credentials");
    return out;
  }
  if (field("client_assertion_type") != kAssertionType || field("client_assertion").empty()) {
    out.error = Refuse(400, "invalid_request",
                       "authenticate with a private_key_jwt client assertion (jwt-bearer)");
    return out;
  }
  // The claims say which client signed; the signature decides.
  const std::vector<std::string> parts = absl::StrSplit(field("client_assertion"), '.');
  std::string payload_text;
  json claims;
  if (parts.size() == 3 && absl::WebSafeBase64Unescape(parts[1], &payload_text)) {
    claims = json::parse(payload_text, nullptr, false);
  }
  if (!claims.is_object()) {
    out.error = Refuse(400, "invalid_request", "the client assertion is not a JWT");
    return out;
  }
  const std::string iss = claims.value("iss", "");
  absl::StatusOr<FhirClient> client = Load(iss);
  const OAuthError unknown = Refuse(401, "invalid_client", "the client assertion is not valid");
  if (!client.ok() || claims.value("sub", "") != iss) {
    out.error = unknown;
    return out;
  }
  absl::StatusOr<std::string> verified = VerifyJws(field("client_assertion"), client->jwks);
  if (!verified.ok()) {
    out.error = unknown;
    return out;
  }
  const absl::Time now = clock_->Now();
  const json& aud = claims.contains("aud") ? claims["aud"] : json();
  const bool aud_ok = (aud.is_string() && aud == options_.token_url) ||
                      (aud.is_array() && aud.size() == 1 && aud[0] == options_.token_url);
  if (!aud_ok) {
    out.error = Refuse(401, "invalid_client", "the assertion's aud is not this token endpoint");
    return out;
  }
  if (!claims.contains("exp") || !claims["exp"].is_number_integer()) {
    out.error = Refuse(401, "invalid_client", "the assertion has no exp");
    return out;
  }
  const absl::Time exp = absl::FromUnixSeconds(claims["exp"].get<int64_t>());
  if (exp + options_.clock_skew <= now) {
    out.error = Refuse(401, "invalid_client", "the assertion has expired");
    return out;
  }
  if (exp > now + options_.max_assertion_lifetime + options_.clock_skew) {
    out.error =
        Refuse(401, "invalid_client", "the assertion's exp is more than five minutes ahead");
    return out;
  }
  const std::string jti = claims.value("jti", "");
  if (jti.empty() || jti.size() > 256) {
    out.error = Refuse(401, "invalid_client", "the assertion has no jti");
    return out;
  }
  absl::StatusOr<FhirScopes> asked = FhirScopes::Parse(field("scope"));
  absl::StatusOr<FhirScopes> allowed = FhirScopes::Parse(client->scope);
  if (!asked.ok() || !allowed.ok() || asked->Within(*allowed).empty()) {
    out.error =
        Refuse(400, "invalid_scope", "ask for system scopes this client was registered for");
    return out;
  }
  const std::string token = absl::WebSafeBase64Escape(RandomBytes(32));
  absl::MutexLock lock(&mu_);
  ForgetExpired(now);
  if (!used_jti_.emplace(absl::StrCat(iss, "\n", jti), exp).second) {
    out.error = Refuse(401, "invalid_client", "the assertion's jti was used before");
    return out;
  }
  const FhirScopes granted = asked->Within(*allowed);
  tokens_[ToBytes(Sha256(token))] =
      Held{FhirSystem{iss, client->agency_id, granted}, now + options_.token_lifetime};
  out.ok = true;
  out.token = AccessToken{token, granted.ToString(), absl::ToInt64Seconds(options_.token_lifetime)};
  return out;
}

absl::StatusOr<FhirSystem> SmartAuth::Authenticate(const std::string& authorization) {
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") || token.empty()) {
    return absl::UnauthenticatedError("send an access token: Authorization: Bearer <token>");
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(ToBytes(Sha256(token)));
  if (it == tokens_.end() || it->second.expires <= now) {
    return absl::UnauthenticatedError("the access token is not valid (unknown or expired)");
  }
  return it->second.system;
}

}  // namespace careloop::edge
