// careloop demo seed: asks a dev hub's console to seed the demo network
// (services/edge/demo_seed.h) and prints the logins. The console answers
// only a request carrying the token it wrote to its data dir, so only
// someone who can read the hub's data dir can seed it.
#include <httplib.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/edge/totp.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

struct SeedOpts {
  std::string console = "http://127.0.0.1:7480";
  std::string data_dir = "var";
};

void Seed(Globals& g, const SeedOpts& o) {
  absl::StatusOr<std::string> token = ReadFile(o.data_dir + "/edge/dev-seed-token");
  if (!token.ok()) {
    g.exit_code = FailUsage(absl::StrCat(
        "no dev seed token in ", o.data_dir,
        "/edge: start the dev hub first (bash tools/run-hub.sh), and pass its --data-dir"));
    return;
  }
  if (!absl::StartsWith(o.console, "http://")) {
    g.exit_code = FailUsage("the demo seed is for a dev hub's console (http:// on loopback)");
    return;
  }
  httplib::Client client(o.console);
  client.set_read_timeout(static_cast<time_t>(g.timeout_seconds), 0);
  httplib::Result res = client.Post(
      "/api/dev/seed", httplib::Headers{{"X-Careloop-Dev-Token", *token}}, "", "application/json");
  if (!res) {
    g.exit_code = Fail(absl::UnavailableError(
        absl::StrCat("the console at ", o.console, " did not answer (is careloopd running?)")));
    return;
  }
  nlohmann::json body = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status != 200 || body.is_discarded()) {
    const std::string why = body.is_object() ? body.value("error", res->body) : res->body;
    g.exit_code = Fail(absl::FailedPreconditionError(absl::StrCat("the seed failed: ", why)));
    return;
  }
  if (g.json) {
    std::cout << body.dump() << "\n";
    return;
  }
  std::cout << "Seeded the demo network. Open " << o.console << "/ and sign in as:\n\n";
  for (const auto& l : body["logins"]) {
    std::cout << "  " << l["name"].get<std::string>() << " (" << l["role"].get<std::string>()
              << ")  agency " << l["agency"].get<std::string>() << "  user "
              << l["user"].get<std::string>() << "  password " << l["password"].get<std::string>();
    if (l.contains("totp_secret")) {
      std::cout << "\n    second factor: careloop demo code " << l["totp_secret"].get<std::string>()
                << "  (or add the secret to an authenticator app)";
    }
    std::cout << "\n";
  }
  std::cout << "\nThe demo patient is MRN " << body["mrn"].get<std::string>()
            << " at org.stmarys; their consent covers contact details and social needs,\n"
               "not behavioral health.\n";
}

// The code an authenticator app would show now for a base32 secret (the
// demo admin's, printed by the seed), for trying the console without a phone.
void Code(Globals& g, const std::string& secret) {
  absl::StatusOr<std::string> raw = edge::Base32Decode(secret);
  if (!raw.ok() || raw->empty()) {
    g.exit_code = FailUsage("give the base32 secret the seed printed (totp_secret)");
    return;
  }
  std::cout << edge::Hotp(*raw, static_cast<uint64_t>(edge::TotpStep(absl::Now())), 6) << "\n";
}

}  // namespace

void AddDemoCommands(CLI::App& app, Globals& g) {
  CLI::App* demo = app.add_subcommand("demo", "a demo network on a dev hub");
  demo->require_subcommand(1);
  auto opts = std::make_shared<SeedOpts>();
  CLI::App* seed = demo->add_subcommand(
      "seed", "register a hospital, two community agencies and a privacy office, with logins");
  seed->add_option("--console", opts->console, "the dev hub's console")->capture_default_str();
  seed->add_option("--data-dir", opts->data_dir, "the dev hub's data dir")->capture_default_str();
  seed->callback([&g, opts] { Seed(g, *opts); });
  auto secret = std::make_shared<std::string>();
  CLI::App* code = demo->add_subcommand(
      "code", "the current one-time code for a demo admin's second factor (dev only)");
  code->add_option("secret", *secret, "the totp_secret the seed printed")->required();
  code->callback([&g, secret] { Code(g, *secret); });
}

}  // namespace careloop::cli
