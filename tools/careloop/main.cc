// careloop: the command-line client of the careloop hub.
#include <cstdlib>
#include <iostream>

#include "services/common/log.h"
#include "tools/careloop/cli.h"

int main(int argc, char** argv) {
  careloop::cli::Globals g;
  careloop::log::RouteProtobufLogsToDebug();
  if (const char* hub = std::getenv("CARELOOP_HUB"); hub != nullptr && *hub != '\0') g.hub = hub;
  CLI::App app{"careloop: command-line client of the careloop referral hub"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "careloop 0.1.0");
  app.add_option("--hub", g.hub, "hub address (env CARELOOP_HUB)")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable JSON output");
  app.add_option("--tls-ca", g.tls_ca, "CA certificate that signs the hub's certificate (PEM)");
  app.add_option("--tls-cert", g.tls_cert, "client certificate (PEM)");
  app.add_option("--tls-key", g.tls_key, "client private key (PEM)");
  app.add_option("--timeout", g.timeout_seconds, "deadline of each call in seconds")
      ->capture_default_str();
  careloop::cli::AddLedgerCommands(app, g);
  careloop::cli::AddKeysCommands(app, g);
  careloop::cli::AddDirectoryCommands(app, g);
  careloop::cli::AddCertsCommands(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : careloop::cli::kUsage;
  }
  return g.exit_code;
}
