// careloopd's configuration: a TOML file (--config) whose every key a flag
// overrides. Defaults are the dev setup of the README: loopback, ./var.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/validate.h"

namespace careloop::hub {

struct HubConfig {
  // [server]
  std::string listen = "127.0.0.1:7400";
  // "all": every service
  std::vector<std::string> services = {"ledger",   "directory",    "consent",
                                       "referral", "notification", "audit"};
  std::string ledger_address;  // a remote LedgerService: unix:PATH, or HOST:PORT with TLS
  size_t max_message_bytes = 16 << 20;
  // [storage]
  std::string data_dir = "./var";
  // [ledger]
  // The ledger's own listener, never the agencies' one: unix:PATH, or
  // HOST:PORT with TLS. Default: unix:<data_dir>/run/ledger.sock.
  std::string ledger_listen;
  std::string hub_name = "careloop.dev";
  std::string log_key;  // default: <data_dir>/keys/hub-log.pem
  absl::Duration idempotency_window = absl::Hours(24 * 7);
  // How often the ledger's background scrub verifies a snapshot of it
  // (zero: never); damage found fails the hub stop.
  absl::Duration scrub_interval = absl::Hours(24);
  // How far a signed envelope's created time may be from the hub's clock.
  absl::Duration max_clock_skew = absl::Minutes(5);
  size_t queue_capacity = 10000;
  // RocksDB block cache for reads (decisions read consent streams directly).
  size_t block_cache_mb = 64;
  storage::LedgerLimits limits;
  // [directory]
  // The hub admin's private key (PEM); dev default <data_dir>/keys/hub-admin.pem.
  std::string admin_key;
  // Production: only the hub admin's public key (PEM) is on the hub.
  std::string admin_public_key;
  // Service codes beside the SDOH and careloop ones.
  std::vector<std::string> extra_service_codes;
  // [consent]
  // Data categories consents may name, beside careloop's own.
  std::vector<std::string> extra_consent_categories;
  // How long a break-glass overrides a deny unless it says otherwise.
  absl::Duration break_glass_default = absl::Hours(1);
  // [referral]
  // How long a recipient has to accept, by priority, before the referral
  // goes to the next candidate; how many candidates are tried; how often the
  // hub looks for overdue referrals.
  absl::Duration deadline_stat = absl::Hours(1);
  absl::Duration deadline_asap = absl::Hours(2);
  absl::Duration deadline_urgent = absl::Hours(4);
  absl::Duration deadline_routine = absl::Hours(48);
  uint32_t max_attempts = 3;
  absl::Duration escalation_interval = absl::Seconds(30);
  // [notification]
  // Nothing acknowledged for this long: a consumer is sent everything after
  // its cursor again. At most `window` events are sent and unacknowledged.
  absl::Duration ack_timeout = absl::Seconds(30);
  uint32_t delivery_window = 256;
  // The key that signs webhooks (not the log key); default
  // <data_dir>/keys/webhook.pem, generated in dev mode.
  std::string webhook_key;
  // A webhook failing this long is disabled and its missed events dead-lettered.
  absl::Duration webhook_disable_after = absl::Hours(72);
  // Hosts outbound deliveries (webhooks) may reach although they are
  // loopback or private (an agency's gateway on the hub's network). In
  // production every other target must be a public https host; dev mode
  // allows private and loopback targets.
  std::vector<std::string> outbound_allow_hosts;
  // [edge] The agency edge: the web console and its JSON API, for the
  // agencies whose keys it holds. Dev default 127.0.0.1:7480 (plain HTTP on
  // loopback); production: off unless set, and HTTPS (edge.tls_cert,
  // edge.tls_key) unless on loopback behind a TLS proxy. "off": no edge.
  std::string edge_listen;
  std::string edge_tls_cert;
  std::string edge_tls_key;
  // Per client address: every request, and sign-ins (against guessing).
  double edge_requests_per_minute = 3000;
  double edge_logins_per_minute = 10;
  // Where people and systems reach the edge (behind a proxy, its public
  // https URL): the FHIR API's base is <public_url>/fhir/R4 and a SMART
  // client assertion's aud <public_url>/fhir/R4/auth/token. Default: the
  // console's own address.
  std::string edge_public_url;
  // An edge run apart from the hub (an agency that does not trust the hub's
  // operator with its key runs its own): the hub's agencies' listener. Set,
  // careloopd runs only the edge. With edge.hub_certs (a directory with
  // ca.crt and agency-<id>.crt/.key per agency served) it calls the hub
  // over mTLS as each agency; without, it is a dev edge (loopback, the dev
  // agency header).
  std::string edge_hub;
  std::string edge_hub_certs;
  // [tls]
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tls_crl_dir;  // hashed CRL files (careloop certs revoke writes them)
  // [log]
  std::string log_level = "info";
  std::string log_format = "logfmt";
  // Test-only modes for the crash test (never in production).
  bool unsafe_power_loss_fs = false;
  bool unsafe_no_sync = false;

  bool tls() const { return !tls_cert.empty(); }
  // careloopd runs only an edge, against a remote hub.
  bool edge_only() const { return !edge_hub.empty(); }
  // The edge's dev mode (a dev KEK in the data dir, the demo seed): a dev
  // hub's, or an edge run apart without certificates.
  bool edge_dev() const { return edge_only() ? edge_hub_certs.empty() : !tls(); }
  bool runs(const std::string& service) const;
  std::string log_key_path() const;
  std::string webhook_key_path() const;
  std::string ledger_dir() const { return data_dir + "/ledger"; }
  // ledger_listen, or the default socket (absolute).
  std::string ledger_listen_address() const;
  std::string admin_key_path() const {
    return admin_key.empty() ? keys_dir() + "/hub-admin.pem" : admin_key;
  }
  std::string keys_dir() const { return data_dir + "/keys"; }
  // The edge's address ("" : no edge), after the dev default.
  std::string edge_address() const;
  std::string edge_dir() const { return data_dir + "/edge"; }
};

// Every service careloopd knows, in start order.
const std::vector<std::string>& KnownServices();

// Parses argv: --config FILE first, then every flag over it. Returns
// INVALID_ARGUMENT with a message for the user on bad input; `*exit_now` is
// set (with OK) for --help and --version, whose text goes to `*out`.
absl::StatusOr<HubConfig> ParseHubConfig(int argc, const char* const* argv, bool* exit_now,
                                         std::string* out);

// Checks the combination (TLS on a non-loopback address, known services...).
absl::Status ValidateHubConfig(const HubConfig& c);

bool IsLoopbackAddress(const std::string& listen);

}  // namespace careloop::hub
