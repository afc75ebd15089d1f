// careloop: the command-line client of the careloop hub.
#include <cstdlib>
#include <iostream>

#include "base/log.h"
#include "base/protobuf_log.h"
#include "services/policy/policy.h"
#include "tools/careloop/cli.h"

// An exception out of here (memory exhausted) ends the CLI through std::terminate,
// which is what it should do.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  careloop::cli::Globals g;
  careloop::log::RouteProtobufLogsToDebug();
  // Read once at start, before any thread exists.
  // NOLINTBEGIN(concurrency-mt-unsafe)
  if (const char* hub = std::getenv("CARELOOP_HUB"); hub != nullptr && *hub != '\0') g.hub = hub;
  if (const char* a = std::getenv("CARELOOP_DEV_AGENCY"); a != nullptr) g.dev_agency = a;
  if (const char* u = std::getenv("CARELOOP_USER"); u != nullptr) g.user = u;
  // NOLINTEND(concurrency-mt-unsafe)
  // A named profile sets defaults before the commands are declared; flags
  // given on the command line override it.
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string name;
    if (arg == "--profile" && i + 1 < argc) name = argv[i + 1];
    if (arg.rfind("--profile=", 0) == 0) name = arg.substr(10);
    if (name.empty()) continue;
    if (absl::Status s = careloop::cli::LoadProfile(name, &g); !s.ok()) {
      std::cerr << "careloop: " << s.message() << "\n";
      return careloop::cli::kUsage;
    }
  }
  CLI::App app{"careloop: command-line client of the careloop referral hub"};
  std::string profile_name;
  app.add_option("--profile", profile_name,
                 "a named profile from $CARELOOP_PROFILES or ~/.config/careloop/profiles.toml");
  app.require_subcommand(1);
  app.set_version_flag("--version", "careloop 0.1.0");
  app.add_option("--hub", g.hub, "hub address (env CARELOOP_HUB)")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable JSON output");
  app.add_option("--tls-ca", g.tls_ca, "CA certificate that signs the hub's certificate (PEM)");
  app.add_option("--tls-cert", g.tls_cert, "client certificate (PEM)");
  app.add_option("--tls-key", g.tls_key, "client private key (PEM)");
  app.add_option("--dev-agency", g.dev_agency,
                 "dev mode only (a hub without TLS): the agency this client speaks for "
                 "(env CARELOOP_DEV_AGENCY; a profile's 'as')");
  app.add_option("--dev-admin", g.dev_admin,
                 "dev mode only: act as this hub admin user (with TLS, an admin certificate "
                 "spiffe://careloop/admin/<user> says it)");
  app.add_option("--user", g.user,
                 "the staff member you act for (a directory user id; env CARELOOP_USER): the hub "
                 "records it with every read of a person's records");
  app.add_option("--timeout", g.timeout_seconds, "deadline of each call in seconds")
      ->capture_default_str();
  careloop::cli::AddLedgerCommands(app, g);
  careloop::cli::AddKeysCommands(app, g);
  careloop::cli::AddDirectoryCommands(app, g);
  careloop::cli::AddHsdsCommands(app, g);
  careloop::cli::AddCertsCommands(app, g);
  careloop::cli::AddConsentCommands(app, g);
  careloop::cli::AddReferralCommands(app, g);
  careloop::cli::AddNotificationCommands(app, g);
  careloop::cli::AddAuditCommands(app, g);
  careloop::cli::AddDemoCommands(app, g);
  careloop::cli::AddEdgeCommands(app, g);
  CLI::App* policy =
      app.add_subcommand("policy", "print the hub's authorization tables (who may make each call)");
  bool markdown = false;
  policy->add_flag("--markdown", markdown, "as docs/SECURITY.md shows them (the default)");
  policy->callback([] { std::cout << careloop::policy::Markdown(); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : careloop::cli::kUsage;
  }
  return g.exit_code;
}
