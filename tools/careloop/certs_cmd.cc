// careloop certs ca|server|agency|revoke: a deployment CA and the certificates
// of mTLS. Files in --dir: ca.key ca.crt serial revoked crl/<hash>.r0, and
// server.key server.crt (the hub), agency-<id>.key agency-<id>.crt per agency.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/trust/certs.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

namespace fs = std::filesystem;

absl::Status WriteFile(const fs::path& path, const std::string& content, bool secret) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path.string()));
  out << content;
  out.close();
  if (secret) ::chmod(path.c_str(), 0600);
  return absl::OkStatus();
}

absl::StatusOr<trust::PemPair> LoadCa(const fs::path& dir) {
  trust::PemPair ca;
  absl::StatusOr<std::string> key = ReadFile((dir / "ca.key").string());
  absl::StatusOr<std::string> cert = ReadFile((dir / "ca.crt").string());
  if (!key.ok() || !cert.ok()) {
    return absl::NotFoundError(
        absl::StrCat("no CA in ", dir.string(), " (run careloop certs ca first)"));
  }
  ca.key_pem = *key;
  ca.cert_pem = *cert;
  return ca;
}

absl::StatusOr<uint64_t> NextSerial(const fs::path& dir) {
  uint64_t serial = 2;
  if (absl::StatusOr<std::string> s = ReadFile((dir / "serial").string()); s.ok()) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*s), &serial)) {
      return absl::DataLossError("the serial file is damaged");
    }
  }
  if (absl::Status st = WriteFile(dir / "serial", absl::StrCat(serial + 1, "\n"), false); !st.ok())
    return st;
  return serial;
}

absl::Status WriteCrl(const fs::path& dir, const trust::PemPair& ca) {
  std::vector<uint64_t> revoked;
  if (absl::StatusOr<std::string> s = ReadFile((dir / "revoked").string()); s.ok()) {
    for (absl::string_view line : absl::StrSplit(*s, '\n', absl::SkipWhitespace())) {
      uint64_t v;
      if (absl::SimpleAtoi(line, &v)) revoked.push_back(v);
    }
  }
  absl::StatusOr<trust::Crl> crl = trust::MakeCrl(ca, revoked, absl::Now(), absl::Hours(24 * 30));
  if (!crl.ok()) return crl.status();
  fs::create_directories(dir / "crl");
  return WriteFile(dir / "crl" / crl->file_name, crl->pem, false);
}

int Done(Globals& g, const absl::Status& s) {
  if (!s.ok()) g.exit_code = FailUsage(std::string(s.message()));
  return g.exit_code;
}

// Loads the CA, takes the next serial, issues with `issue`, and writes
// <base>.key (0600) and <base>.crt in the CA's directory.
void IssueInto(
    Globals& g, const fs::path& d, const std::string& base, const char* what,
    const std::function<absl::StatusOr<trust::PemPair>(const trust::PemPair&, uint64_t)>& issue) {
  absl::StatusOr<trust::PemPair> ca_pair = LoadCa(d);
  if (!ca_pair.ok()) return (void)Done(g, ca_pair.status());
  absl::StatusOr<uint64_t> serial = NextSerial(d);
  if (!serial.ok()) return (void)Done(g, serial.status());
  absl::StatusOr<trust::PemPair> p = issue(*ca_pair, *serial);
  if (!p.ok()) return (void)Done(g, p.status());
  absl::Status s = WriteFile(d / (base + ".key"), p->key_pem, true);
  if (s.ok()) s = WriteFile(d / (base + ".crt"), p->cert_pem, false);
  if (Done(g, s) == 0) {
    std::cout << what << " " << (d / (base + ".crt")).string() << " serial " << *serial << "\n";
  }
}

}  // namespace

void AddCertsCommands(CLI::App& app, Globals& g) {
  CLI::App* certs = app.add_subcommand("certs", "a deployment CA and mTLS certificates");
  certs->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto days = std::make_shared<int>(825);

  CLI::App* ca = certs->add_subcommand("ca", "create the deployment CA (and an empty CRL)");
  ca->add_option("--dir", *dir, "where the CA lives")->required();
  ca->callback([&g, dir] {
    fs::path d(*dir);
    if (fs::exists(d / "ca.key")) {
      Done(g, absl::AlreadyExistsError(absl::StrCat("a CA already exists in ", *dir)));
      return;
    }
    fs::create_directories(d);
    absl::StatusOr<trust::PemPair> pair = trust::MakeCertificateAuthority(
        "careloop deployment CA", absl::Now(), absl::Hours(24 * 3650));
    if (!pair.ok()) return (void)Done(g, pair.status());
    absl::Status s = WriteFile(d / "ca.key", pair->key_pem, true);
    if (s.ok()) s = WriteFile(d / "ca.crt", pair->cert_pem, false);
    if (s.ok()) s = WriteFile(d / "serial", "2\n", false);
    if (s.ok()) s = WriteCrl(d, *pair);
    if (Done(g, s) == 0)
      std::cout << "CA: " << (d / "ca.crt").string() << " (key " << (d / "ca.key").string()
                << ")\n";
  });

  auto dns = std::make_shared<std::vector<std::string>>();
  auto ips = std::make_shared<std::vector<std::string>>();
  auto name = std::make_shared<std::string>("server");
  CLI::App* server = certs->add_subcommand("server", "issue the hub's certificate");
  server->add_option("--dir", *dir, "the CA's directory")->required();
  server->add_option("--dns", *dns, "DNS name (repeatable)");
  server->add_option("--ip", *ips, "IP address (repeatable)");
  server->add_option("--name", *name, "file name prefix")->capture_default_str();
  server->add_option("--days", *days, "validity")->capture_default_str();
  server->callback([&g, dir, dns, ips, name, days] {
    IssueInto(g, *dir, *name, "server certificate",
              [&](const trust::PemPair& authority, uint64_t serial) {
                return trust::IssueServerCertificate(authority, *dns, *ips, serial, absl::Now(),
                                                     absl::Hours(24) * *days);
              });
  });

  auto agency = std::make_shared<std::string>();
  CLI::App* client = certs->add_subcommand(
      "agency", "issue an agency's client certificate (spiffe://careloop/agency/<id>)");
  client->add_option("--dir", *dir, "the CA's directory")->required();
  client->add_option("--id", *agency, "agency id")->required();
  client->add_option("--days", *days, "validity")->capture_default_str();
  client->callback([&g, dir, agency, days] {
    IssueInto(g, *dir, "agency-" + *agency, "client certificate",
              [&](const trust::PemPair& authority, uint64_t serial) {
                return trust::IssueAgencyCertificate(authority, *agency, serial, absl::Now(),
                                                     absl::Hours(24) * *days);
              });
  });

  auto admin = std::make_shared<std::string>();
  CLI::App* admin_cmd = certs->add_subcommand(
      "admin", "issue a hub admin's client certificate (spiffe://careloop/admin/<user>)");
  admin_cmd->add_option("--dir", *dir, "the CA's directory")->required();
  admin_cmd->add_option("--user", *admin, "the admin's user id")->required();
  admin_cmd->add_option("--days", *days, "validity")->capture_default_str();
  admin_cmd->callback([&g, dir, admin, days] {
    IssueInto(g, *dir, "admin-" + *admin, "client certificate",
              [&](const trust::PemPair& authority, uint64_t serial) {
                return trust::IssueAdminCertificate(authority, *admin, serial, absl::Now(),
                                                    absl::Hours(24) * *days);
              });
  });

  auto serial = std::make_shared<uint64_t>(0);
  CLI::App* revoke =
      certs->add_subcommand("revoke", "revoke a certificate by serial and rewrite the CRL");
  revoke->add_option("--dir", *dir, "the CA's directory")->required();
  revoke->add_option("--serial", *serial, "the certificate's serial")->required();
  revoke->callback([&g, dir, serial] {
    fs::path d(*dir);
    absl::StatusOr<trust::PemPair> ca_pair = LoadCa(d);
    if (!ca_pair.ok()) return (void)Done(g, ca_pair.status());
    std::ofstream(d / "revoked", std::ios::app) << *serial << "\n";
    if (Done(g, WriteCrl(d, *ca_pair)) == 0) {
      std::cout << "revoked serial " << *serial << "; CRL in " << (d / "crl").string()
                << " (careloopd --tls-crl-dir)\n";
    }
  });
}

}  // namespace careloop::cli
