// Shared pieces of the careloop CLI: global options, the hub connection,
// output (text or --json) and exit codes.
#pragma once

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/file.h"
#include "careloop/v1/directory.pb.h"
#include "google/protobuf/message.h"
#include "services/common/grpc_status.h"

namespace careloop::cli {

// Exit codes, documented in docs/CLI.md.
enum Exit : int {
  kOk = 0,
  kVerifyFailed = 1,  // a verification found a problem
  kUsage = 2,         // bad flags or files
  kRejected = 3,      // the hub refused the request (its status is printed)
  kUnavailable = 4,   // the hub could not be reached, or timed out
};

struct Globals {
  std::string hub = "127.0.0.1:7400";
  bool json = false;
  std::string tls_ca, tls_cert, tls_key;
  double timeout_seconds = 30;
  // Dev mode only (a hub without TLS): the agency this client speaks for, or
  // the hub admin (user id) it is.
  std::string dev_agency;
  std::string dev_admin;
  // The staff member of the agency on whose behalf reads are made (the hub
  // records it with every read of a person's records; it grants nothing).
  std::string user;
  // The ledger's own listener (careloop ledger ...): the hub's operators only.
  std::string ledger = "unix:var/run/ledger.sock";
  int exit_code = kOk;
  // The named profile's keys (--profile), defaults that flags override.
  std::map<std::string, std::string> profile;
};

// Reads profile `name` from $CARELOOP_PROFILES or ~/.config/careloop/profiles.toml
// (a TOML table per profile: hub, tls_ca, tls_cert, tls_key, sign_key, as,
// user, role, key_id, display_name) and applies its connection settings to `g`.
absl::Status LoadProfile(const std::string& name, Globals* g);

std::shared_ptr<grpc::Channel> Connect(const Globals& g);
// The ledger's listener (g.ledger): a unix socket, or TCP with the TLS flags.
std::shared_ptr<grpc::Channel> ConnectLedger(const Globals& g);
// Prints the error to stderr and returns the exit code it maps to.
int Fail(const absl::Status& status);
int FailUsage(const std::string& message);
std::string ToJson(const google::protobuf::Message& m);
absl::Status FromJson(const std::string& json, google::protobuf::Message* m);
using ::careloop::ReadFile;

// Prints a hub answer: the error (setting the exit code), or JSON, or text.
template <typename T, typename TextFn>
void Output(Globals& g, const absl::StatusOr<T>& result, TextFn text) {
  if (!result.ok()) {
    g.exit_code = Fail(result.status());
  } else if (g.json) {
    std::cout << ToJson(*result) << "\n";
  } else {
    text(*result);
  }
}

// Agency kinds by their CLI names (hospital, community-agency, ...).
const std::map<std::string, v1::AgencyKind>& Kinds();
// An instant as RFC 3339 in UTC; "-" for 0 (not set).
std::string When(int64_t unix_nanos);
// An RFC 3339 flag value as unix nanos; 0 when empty. The error names `flag`.
absl::StatusOr<int64_t> ParseInstant(const std::string& text, const char* flag);
// --from and --to as unix nanos (0 when empty); on a bad value prints why,
// sets the usage exit code and returns false.
bool ParseRange(Globals& g, const std::string& from, const std::string& to, int64_t* from_nanos,
                int64_t* to_nanos);

// Deadline and, in dev mode, the caller's agency (--dev-agency).
void Prepare(const Globals& g, grpc::ClientContext* ctx);

// Who signs an envelope: --sign-key and --as, --user, --role, --key-id (a
// profile's values are the defaults); the defaults sign as the hub admin.
struct Signer {
  std::string key_file, sender = "hub", user = "hub-admin", role = "hub-admin",
                        key_id = "hub-admin-1", display_name, message_id, save_envelope;
};
void AddSignFlags(CLI::App* cmd, Signer& s, const Globals& g);
absl::StatusOr<std::string> Sign(const google::protobuf::Message& payload, const Signer& s);
// Signs `payload` and submits it to the service that takes its type.
void Submit(Globals& g, const google::protobuf::Message& payload, const Signer& s);
// Sends envelope bytes exactly as signed: a retry of the same bytes is
// answered with the original receipt.
void SubmitBytes(Globals& g, const std::string& envelope);

// Calls one unary RPC on a fresh stub of `Service` and prints its answer.
template <typename Service, typename Req, typename Resp, typename Method, typename TextFn>
void CallUnary(Globals& g, Method method, const Req& req, TextFn text) {
  grpc::ClientContext ctx;
  Prepare(g, &ctx);
  Resp resp;
  auto stub = Service::NewStub(Connect(g));
  grpc::Status st = (stub.get()->*method)(&ctx, req, &resp);
  absl::StatusOr<Resp> result = resp;
  if (!st.ok()) result = FromGrpcStatus(st);
  Output(g, result, text);
}

void AddLedgerCommands(CLI::App& app, Globals& g);
void AddConsentCommands(CLI::App& app, Globals& g);
void AddReferralCommands(CLI::App& app, Globals& g);
void AddNotificationCommands(CLI::App& app, Globals& g);
void AddAuditCommands(CLI::App& app, Globals& g);
void AddDirectoryCommands(CLI::App& app, Globals& g);
void AddHsdsCommands(CLI::App& app, Globals& g);
void AddCertsCommands(CLI::App& app, Globals& g);
void AddKeysCommands(CLI::App& app, Globals& g);
void AddDemoCommands(CLI::App& app, Globals& g);
void AddEdgeCommands(CLI::App& app, Globals& g);

}  // namespace careloop::cli
