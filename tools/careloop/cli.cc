#include "tools/careloop/cli.h"

#include <openssl/rand.h>
#include <toml++/toml.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/sha256.h"
#include "careloop/v1/consent.grpc.pb.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/common/grpc_status.h"
#include "services/consent/consent_core.h"
#include "services/trust/envelope.h"

namespace careloop::cli {

namespace {
std::shared_ptr<grpc::Channel> ConnectTo(const Globals& g, const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!g.tls_ca.empty()) {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = ReadFile(g.tls_ca).value_or("");
    if (!g.tls_cert.empty()) {
      opts.pem_cert_chain = ReadFile(g.tls_cert).value_or("");
      opts.pem_private_key = ReadFile(g.tls_key).value_or("");
    }
    creds = grpc::SslCredentials(opts);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  if (address.rfind("unix:", 0) == 0) creds = grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(address, creds, args);
}
}  // namespace

std::shared_ptr<grpc::Channel> Connect(const Globals& g) { return ConnectTo(g, g.hub); }
std::shared_ptr<grpc::Channel> ConnectLedger(const Globals& g) { return ConnectTo(g, g.ledger); }

int Fail(const absl::Status& status) {
  std::cerr << "careloop: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << "\n";
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kUnavailable;
    default:
      return kRejected;
  }
}

int FailUsage(const std::string& message) {
  std::cerr << "careloop: " << message << "\n";
  return kUsage;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

absl::Status FromJson(const std::string& json, google::protobuf::Message* m) {
  auto s = google::protobuf::util::JsonStringToMessage(json, m);
  if (!s.ok()) return absl::InvalidArgumentError(std::string(s.message()));
  return absl::OkStatus();
}

absl::Status LoadProfile(const std::string& name, Globals* g) {
  std::string path;
  // The CLI reads its environment on its one thread, before it connects.
  // NOLINTBEGIN(concurrency-mt-unsafe)
  if (const char* env = std::getenv("CARELOOP_PROFILES"); env != nullptr && *env != '\0') {
    path = env;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    path = std::string(home) + "/.config/careloop/profiles.toml";
  }
  // NOLINTEND(concurrency-mt-unsafe)
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("profiles ", path, ": ", std::string(e.description())));
  }
  const toml::table* p = t[name].as_table();
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("no profile '", name, "' in ", path));
  for (const auto& [key, value] : *p) {
    std::optional<std::string> v = value.value<std::string>();
    if (!v)
      return absl::InvalidArgumentError(
          absl::StrCat("profile ", name, ": ", std::string(key.str()), " must be a string"));
    g->profile[std::string(key.str())] = *v;
  }
  auto take = [&](const char* key, std::string* out) {
    if (auto it = g->profile.find(key); it != g->profile.end()) *out = it->second;
  };
  take("hub", &g->hub);
  take("tls_ca", &g->tls_ca);
  take("tls_cert", &g->tls_cert);
  take("tls_key", &g->tls_key);
  // Dev mode: the profile's signing agency speaks for the client too.
  take("as", &g->dev_agency);
  take("dev_agency", &g->dev_agency);
  return absl::OkStatus();
}

const std::map<std::string, v1::AgencyKind>& Kinds() {
  static const std::map<std::string, v1::AgencyKind> kinds = {
      {"hospital", v1::HOSPITAL},
      {"community-agency", v1::COMMUNITY_AGENCY},
      {"government-office", v1::GOVERNMENT_OFFICE},
      {"payer", v1::PAYER},
      {"other", v1::OTHER_KIND}};
  return kinds;
}

absl::StatusOr<int64_t> ParseInstant(const std::string& text, const char* flag) {
  if (text.empty()) return 0;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": an RFC 3339 time such as 2027-01-31T00:00:00Z (", err, ")"));
  }
  return absl::ToUnixNanos(t);
}

bool ParseRange(Globals& g, const std::string& from, const std::string& to, int64_t* from_nanos,
                int64_t* to_nanos) {
  absl::StatusOr<int64_t> f = ParseInstant(from, "--from");
  absl::StatusOr<int64_t> t = ParseInstant(to, "--to");
  if (!f.ok() || !t.ok()) {
    g.exit_code = FailUsage(std::string((f.ok() ? t : f).status().message()));
    return false;
  }
  *from_nanos = *f;
  *to_nanos = *t;
  return true;
}

std::string When(int64_t unix_nanos) {
  if (unix_nanos == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixNanos(unix_nanos),
                          absl::UTCTimeZone());
}

// ---- Signed envelopes ----

void AddSignFlags(CLI::App* cmd, Signer& s, const Globals& g) {
  // A profile's signer is the default; flags override it.
  auto from_profile = [&](const char* key, std::string* field) {
    if (auto it = g.profile.find(key); it != g.profile.end()) *field = it->second;
  };
  from_profile("sign_key", &s.key_file);
  from_profile("as", &s.sender);
  from_profile("user", &s.user);
  from_profile("role", &s.role);
  from_profile("key_id", &s.key_id);
  from_profile("display_name", &s.display_name);
  cmd->add_option("--sign-key", s.key_file, "the signer's private key (PEM)")
      ->required(s.key_file.empty());
  cmd->add_option("--as", s.sender, "the sending agency ('hub' for the hub admin)")
      ->capture_default_str();
  cmd->add_option("--user", s.user, "the acting person's user id")->capture_default_str();
  cmd->add_option("--role", s.role, "the role acted in (hub-admin, admin, ...)")
      ->capture_default_str();
  cmd->add_option("--key-id", s.key_id, "which of the sender's keys signs")->capture_default_str();
  cmd->add_option("--display-name", s.display_name,
                  "the acting person's name (signed, not logged)");
  cmd->add_option("--message-id", s.message_id, "the message id (default: random)");
  cmd->add_option(
      "--save-envelope", s.save_envelope,
      "also write the signed envelope here; `careloop envelope submit` resends it unchanged");
}

namespace {
std::string RandomId() {
  unsigned char b[12];
  RAND_bytes(b, sizeof b);
  return "m-" + HexEncode(absl::string_view(reinterpret_cast<char*>(b), sizeof b));
}

}  // namespace

absl::StatusOr<std::string> Sign(const google::protobuf::Message& payload, const Signer& s) {
  absl::StatusOr<std::string> pem = ReadFile(s.key_file);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<trust::Ed25519PrivateKey> key = trust::Ed25519PrivateKey::FromPem(*pem);
  if (!key.ok()) return key.status();
  v1::Actor actor;
  actor.set_user_id(s.user);
  actor.set_display_name(s.display_name);
  actor.set_role(s.role);
  v1::Envelope e = trust::NewEnvelope(payload, s.sender, actor, s.key_id, absl::Now(),
                                      s.message_id.empty() ? RandomId() : s.message_id);
  return trust::SignEnvelope(e, *key);
}

void Prepare(const Globals& g, grpc::ClientContext* ctx) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(g.timeout_seconds)));
  if (!g.dev_agency.empty()) ctx->AddMetadata("x-careloop-dev-agency", g.dev_agency);
  if (!g.dev_admin.empty()) ctx->AddMetadata("x-careloop-dev-admin", g.dev_admin);
  if (!g.user.empty()) ctx->AddMetadata("x-careloop-actor", g.user);
}

void Submit(Globals& g, const google::protobuf::Message& payload, const Signer& s) {
  absl::StatusOr<std::string> envelope = Sign(payload, s);
  if (!envelope.ok()) {
    g.exit_code = FailUsage(std::string(envelope.status().message()));
    return;
  }
  if (!s.save_envelope.empty()) std::ofstream(s.save_envelope, std::ios::binary) << *envelope;
  SubmitBytes(g, *envelope);
}

// Sends envelope bytes exactly as signed: a retry of the same bytes is
// answered with the original receipt.
void SubmitBytes(Globals& g, const std::string& envelope) {
  grpc::ClientContext ctx;
  Prepare(g, &ctx);
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(envelope);
  v1::SubmitEnvelopeResponse resp;
  // Consent changes go to ConsentService, directory changes to DirectoryService.
  v1::Envelope parsed;
  parsed.ParseFromString(envelope);
  const bool consent = consent::ConsentPolicy(absl::Minutes(5))
                           .roles_by_payload_type.contains(parsed.payload_type());
  grpc::Status st = consent ? v1::ConsentService::NewStub(Connect(g))->Submit(&ctx, req, &resp)
                            : v1::DirectoryService::NewStub(Connect(g))->Submit(&ctx, req, &resp);
  absl::StatusOr<v1::SubmitEnvelopeResponse> result = resp;
  if (!st.ok()) result = FromGrpcStatus(st);
  Output(g, result, [&](const v1::SubmitEnvelopeResponse& r) {
    v1::EventHeader h;
    h.ParseFromString(r.receipt().header_bytes());
    std::cout << "accepted: " << h.type() << " at seq " << h.seq() << " (" << h.stream()
              << " version " << h.stream_version() << "), signed head size "
              << r.receipt().head().tree_size() << "\n";
    if (!r.assigned_id().empty()) std::cout << "id: " << r.assigned_id() << "\n";
  });
}

}  // namespace careloop::cli
