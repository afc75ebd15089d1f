#include <fstream>
#include <iostream>

#include "services/trust/ed25519.h"
#include "services/trust/head_signer.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {

void AddKeysCommands(CLI::App& app, Globals& g) {
  CLI::App* keys = app.add_subcommand("keys", "Ed25519 keys");
  keys->require_subcommand(1);
  struct GenOpts {
    std::string out;
    std::string public_out;
    std::string name = "careloop.dev";
  };
  auto opts = std::make_shared<GenOpts>();
  CLI::App* gen = keys->add_subcommand(
      "generate", "generate a key (PEM, mode 0600) and print its verifier key");
  gen->add_option("--out", opts->out, "file for the private key (must not exist)")->required();
  gen->add_option("--name", opts->name, "key name in the verifier key (the hub name for log keys)")
      ->capture_default_str();
  gen->add_option("--public-out", opts->public_out, "also write the public key (PEM) here");
  gen->callback([&g, opts] {
    absl::StatusOr<trust::Ed25519PrivateKey> key = trust::Ed25519PrivateKey::Generate();
    if (!key.ok()) {
      g.exit_code = Fail(key.status());
      return;
    }
    if (absl::Status s = trust::WritePrivateKeyFile(opts->out, *key); !s.ok()) {
      g.exit_code = FailUsage(std::string(s.message()));
      return;
    }
    if (!opts->public_out.empty()) std::ofstream(opts->public_out) << key->public_key().ToPem();
    trust::Ed25519HeadSigner signer(opts->name, *key);
    if (g.json) {
      std::cout << "{\"private_key_file\":\"" << opts->out << "\",\"verifier_key\":\""
                << signer.VerifierKey() << "\"}\n";
    } else {
      std::cout << "wrote " << opts->out << "\nverifier key: " << signer.VerifierKey() << "\n";
    }
  });
}

}  // namespace careloop::cli
