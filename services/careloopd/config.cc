#include "services/careloopd/config.h"

#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <sstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/log.h"

namespace careloop::hub {
namespace {

absl::Status ParseDurationField(const std::string& text, const char* key, absl::Duration* out) {
  if (!absl::ParseDuration(text, out) || *out < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", text, "' is not a duration such as 168h or 30m"));
  }
  return absl::OkStatus();
}

std::vector<std::string> SplitServices(const std::string& s) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    std::string p(absl::StripAsciiWhitespace(part));
    if (p == "all") {
      for (const std::string& k : KnownServices()) out.push_back(k);
    } else {
      out.push_back(p);
    }
  }
  return out;
}

template <typename T>
absl::Status ReadInt(const toml::table& t, const char* section, const char* key, T* out) {
  toml::node_view<const toml::node> n = t.at_path(absl::StrCat(section, ".", key));
  if (!n) return absl::OkStatus();
  std::optional<int64_t> v = n.value<int64_t>();
  if (!v || *v < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(section, ".", key, " must be a non-negative integer"));
  }
  *out = static_cast<T>(*v);
  return absl::OkStatus();
}

absl::Status ReadString(const toml::table& t, const char* section, const char* key,
                        std::string* out) {
  toml::node_view<const toml::node> n = t.at_path(absl::StrCat(section, ".", key));
  if (!n) return absl::OkStatus();
  std::optional<std::string> v = n.value<std::string>();
  if (!v) return absl::InvalidArgumentError(absl::StrCat(section, ".", key, " must be a string"));
  *out = *v;
  return absl::OkStatus();
}

// An array of strings at section.key, if present, replaces *out.
absl::Status ReadStrings(const toml::table& t, const char* section, const char* key,
                         std::vector<std::string>* out) {
  const toml::array* list = t.at_path(absl::StrCat(section, ".", key)).as_array();
  if (list == nullptr) return absl::OkStatus();
  out->clear();
  for (const toml::node& n : *list) {
    std::optional<std::string> v = n.value<std::string>();
    if (!v)
      return absl::InvalidArgumentError(absl::StrCat(section, ".", key, " must hold strings"));
    out->push_back(*v);
  }
  return absl::OkStatus();
}

// A duration such as "90m" at section.key, if present.
absl::Status ReadDuration(const toml::table& t, const char* section, const char* key,
                          absl::Duration* out) {
  std::string text;
  if (absl::Status s = ReadString(t, section, key, &text); !s.ok()) return s;
  if (text.empty()) return absl::OkStatus();
  const std::string name = absl::StrCat(section, ".", key);
  return ParseDurationField(text, name.c_str(), out);
}

absl::Status LoadToml(const std::string& path, HubConfig* c) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << "config " << path << ": " << e.description() << " at " << e.source().begin;
    return absl::InvalidArgumentError(os.str());
  }
  std::string services;
  if (absl::Status s = ReadString(t, "server", "listen", &c->listen); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "server", "services", &services); !s.ok()) return s;
  if (!services.empty()) c->services = SplitServices(services);
  if (absl::Status s = ReadString(t, "server", "ledger", &c->ledger_address); !s.ok()) return s;
  if (absl::Status s = ReadInt(t, "server", "max_message_bytes", &c->max_message_bytes); !s.ok())
    return s;
  if (absl::Status s = ReadString(t, "storage", "data_dir", &c->data_dir); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "ledger", "listen", &c->ledger_listen); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "ledger", "hub_name", &c->hub_name); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "ledger", "log_key", &c->log_key); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "notification", "webhook_key", &c->webhook_key); !s.ok())
    return s;
  if (absl::Status s = ReadString(t, "edge", "listen", &c->edge_listen); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "edge", "tls_cert", &c->edge_tls_cert); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "edge", "tls_key", &c->edge_tls_key); !s.ok()) return s;
  if (absl::Status s = ReadInt(t, "edge", "requests_per_minute", &c->edge_requests_per_minute);
      !s.ok())
    return s;
  if (absl::Status s = ReadString(t, "edge", "hub", &c->edge_hub); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "edge", "public_url", &c->edge_public_url); !s.ok()) return s;
  while (absl::EndsWith(c->edge_public_url, "/")) c->edge_public_url.pop_back();
  if (absl::Status s = ReadString(t, "edge", "hub_certs", &c->edge_hub_certs); !s.ok()) return s;
  if (absl::Status s = ReadInt(t, "edge", "logins_per_minute", &c->edge_logins_per_minute); !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "queue_capacity", &c->queue_capacity); !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "block_cache_mb", &c->block_cache_mb); !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "max_payload_bytes", &c->limits.max_payload_bytes);
      !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "max_batch_events", &c->limits.max_batch_events);
      !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "max_batch_bytes", &c->limits.max_batch_bytes); !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "max_read_limit", &c->limits.max_read_limit); !s.ok())
    return s;
  if (absl::Status s = ReadInt(t, "ledger", "max_read_bytes", &c->limits.max_read_bytes); !s.ok())
    return s;
  if (absl::Status s = ReadString(t, "directory", "admin_key", &c->admin_key); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "directory", "admin_public_key", &c->admin_public_key);
      !s.ok())
    return s;
  for (auto [section, key, out] :
       std::vector<std::tuple<const char*, const char*, std::vector<std::string>*>>{
           {"directory", "extra_service_codes", &c->extra_service_codes},
           {"notification", "outbound_allow_hosts", &c->outbound_allow_hosts},
           {"consent", "extra_categories", &c->extra_consent_categories}}) {
    if (absl::Status s = ReadStrings(t, section, key, out); !s.ok()) return s;
  }
  for (auto [section, key, field] :
       std::vector<std::tuple<const char*, const char*, absl::Duration*>>{
           {"ledger", "idempotency_window", &c->idempotency_window},
           {"ledger", "scrub_interval", &c->scrub_interval},
           {"envelope", "max_clock_skew", &c->max_clock_skew},
           {"consent", "break_glass_default", &c->break_glass_default},
           {"referral", "deadline_stat", &c->deadline_stat},
           {"referral", "deadline_asap", &c->deadline_asap},
           {"referral", "deadline_urgent", &c->deadline_urgent},
           {"referral", "deadline_routine", &c->deadline_routine},
           {"referral", "escalation_interval", &c->escalation_interval},
           {"notification", "ack_timeout", &c->ack_timeout},
           {"notification", "webhook_disable_after", &c->webhook_disable_after}}) {
    if (absl::Status s = ReadDuration(t, section, key, field); !s.ok()) return s;
  }
  if (absl::Status s = ReadInt(t, "referral", "max_attempts", &c->max_attempts); !s.ok()) return s;
  if (absl::Status s = ReadInt(t, "notification", "window", &c->delivery_window); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "tls", "cert", &c->tls_cert); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "tls", "key", &c->tls_key); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "tls", "client_ca", &c->tls_client_ca); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "tls", "crl_dir", &c->tls_crl_dir); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "log", "level", &c->log_level); !s.ok()) return s;
  if (absl::Status s = ReadString(t, "log", "format", &c->log_format); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& KnownServices() {
  static const std::vector<std::string> services = {"ledger",   "directory",    "consent",
                                                    "referral", "notification", "audit"};
  return services;
}

bool HubConfig::runs(const std::string& service) const {
  return std::find(services.begin(), services.end(), service) != services.end();
}

std::string HubConfig::edge_address() const {
  if (edge_listen == "off") return "";
  if (!edge_listen.empty()) return edge_listen;
  return edge_dev() ? "127.0.0.1:7480" : "";
}

std::string HubConfig::webhook_key_path() const {
  return webhook_key.empty() ? keys_dir() + "/webhook.pem" : webhook_key;
}

std::string HubConfig::log_key_path() const {
  return log_key.empty() ? keys_dir() + "/hub-log.pem" : log_key;
}

std::string HubConfig::ledger_listen_address() const {
  if (!ledger_listen.empty()) return ledger_listen;
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(data_dir, ec);
  return absl::StrCat("unix:", (dir.lexically_normal() / "run" / "ledger.sock").string());
}

bool IsLoopbackAddress(const std::string& listen) {
  return absl::StartsWith(listen, "127.") || absl::StartsWith(listen, "localhost:") ||
         absl::StartsWith(listen, "[::1]:");
}

absl::StatusOr<HubConfig> ParseHubConfig(int argc, const char* const* argv, bool* exit_now,
                                         std::string* out) {
  *exit_now = false;
  CLI::App app{"careloopd: the careloop interagency referral hub"};
  app.set_version_flag("--version", "careloopd 0.1.0");
  std::string config_path, services, window, skew;
  HubConfig flags;  // values of flags, applied only when given
  size_t max_payload = 0, max_batch_events = 0, max_batch_bytes = 0, max_read = 0,
         max_read_bytes = 0;
  auto* o_config = app.add_option("--config", config_path, "TOML configuration file");
  auto* o_listen = app.add_option("--listen", flags.listen,
                                  "address to serve on [server.listen] (default 127.0.0.1:7400)");
  auto* o_services = app.add_option("--services", services,
                                    "services to run: all, or a comma list [server.services]");
  auto* o_ledger = app.add_option("--ledger", flags.ledger_address,
                                  "address of a remote LedgerService [server.ledger]");
  auto* o_ledger_listen = app.add_option(
      "--ledger-listen", flags.ledger_listen,
      "the ledger's own listener [ledger.listen]: unix:PATH (default unix:<data dir>/run/"
      "ledger.sock) or, with TLS only, HOST:PORT");
  auto* o_msg = app.add_option("--max-message-bytes", flags.max_message_bytes,
                               "largest gRPC message [server.max_message_bytes]");
  auto* o_data = app.add_option("--data-dir", flags.data_dir,
                                "data directory [storage.data_dir] (default ./var)");
  auto* o_hub = app.add_option("--hub-name", flags.hub_name,
                               "hub name: log origin prefix and key name [ledger.hub_name]");
  auto* o_key =
      app.add_option("--log-key", flags.log_key, "the hub's log key (PEM) [ledger.log_key]");
  auto* o_window =
      app.add_option("--idempotency-window", window,
                     "how long idempotency keys are kept, e.g. 168h [ledger.idempotency_window]");
  std::string scrub;
  auto* o_scrub =
      app.add_option("--scrub-interval", scrub,
                     "how often the ledger is verified in the background, e.g. 24h; 0 never "
                     "[ledger.scrub_interval]");
  auto* o_skew = app.add_option("--max-clock-skew", skew,
                                "how far a signed envelope's time may be from the hub's clock, "
                                "e.g. 5m [envelope.max_clock_skew]");
  auto* o_queue =
      app.add_option("--queue-capacity", flags.queue_capacity,
                     "queued appends before RESOURCE_EXHAUSTED [ledger.queue_capacity]");
  auto* o_cache = app.add_option("--block-cache-mb", flags.block_cache_mb,
                                 "RocksDB block cache in MiB [ledger.block_cache_mb]");
  auto* o_payload = app.add_option("--max-payload-bytes", max_payload,
                                   "largest event payload [ledger.max_payload_bytes]");
  auto* o_bevents = app.add_option("--max-batch-events", max_batch_events,
                                   "most events in one append [ledger.max_batch_events]");
  auto* o_bbytes = app.add_option("--max-batch-bytes", max_batch_bytes,
                                  "largest append [ledger.max_batch_bytes]");
  auto* o_read = app.add_option("--max-read-limit", max_read,
                                "most events in one read page [ledger.max_read_limit]");
  auto* o_read_bytes = app.add_option("--max-read-bytes", max_read_bytes,
                                      "most bytes of events in one read page (at least one event) "
                                      "[ledger.max_read_bytes]");
  auto* o_admin = app.add_option("--admin-key", flags.admin_key,
                                 "the hub admin's private key (PEM), dev [directory.admin_key]");
  auto* o_codes = app.add_option("--service-code", flags.extra_service_codes,
                                 "a service code beside the SDOH and careloop ones (repeatable) "
                                 "[directory.extra_service_codes]");
  auto* o_categories =
      app.add_option("--consent-category", flags.extra_consent_categories,
                     "a data category consents may name, beside careloop's own (repeatable) "
                     "[consent.extra_categories]");
  std::string break_glass;
  auto* o_break_glass = app.add_option(
      "--break-glass-default", break_glass,
      "how long a break-glass overrides a deny, e.g. 1h [consent.break_glass_default]");
  std::string deadline_stat, deadline_asap, deadline_urgent, deadline_routine, escalation;
  auto* o_dstat =
      app.add_option("--deadline-stat", deadline_stat,
                     "time to accept a stat referral, e.g. 1h [referral.deadline_stat]");
  auto* o_dasap = app.add_option("--deadline-asap", deadline_asap, "[referral.deadline_asap]");
  auto* o_durgent =
      app.add_option("--deadline-urgent", deadline_urgent, "[referral.deadline_urgent]");
  auto* o_droutine =
      app.add_option("--deadline-routine", deadline_routine, "[referral.deadline_routine]");
  auto* o_attempts = app.add_option("--max-attempts", flags.max_attempts,
                                    "candidates tried before unassigned [referral.max_attempts]");
  auto* o_escalation =
      app.add_option("--escalation-interval", escalation,
                     "how often overdue referrals are looked for [referral.escalation_interval]");
  std::string ack_timeout;
  auto* o_ack = app.add_option(
      "--ack-timeout", ack_timeout,
      "unacknowledged this long, a consumer's events are sent again [notification.ack_timeout]");
  std::string webhook_disable_after;
  auto* o_wdisable = app.add_option(
      "--webhook-disable-after", webhook_disable_after,
      "a webhook failing this long is disabled [notification.webhook_disable_after]");
  auto* o_wkey = app.add_option("--webhook-key", flags.webhook_key,
                                "the key that signs webhooks (PEM) [notification.webhook_key]");
  auto* o_edge =
      app.add_option("--edge-listen", flags.edge_listen,
                     "the console's address, or off [edge.listen] (dev default 127.0.0.1:7480)");
  auto* o_edge_cert = app.add_option("--edge-tls-cert", flags.edge_tls_cert,
                                     "the console's HTTPS certificate (PEM) [edge.tls_cert]");
  auto* o_edge_key = app.add_option("--edge-tls-key", flags.edge_tls_key,
                                    "the console's HTTPS key (PEM) [edge.tls_key]");
  auto* o_edge_rpm =
      app.add_option("--edge-requests-per-minute", flags.edge_requests_per_minute,
                     "console requests per client address [edge.requests_per_minute]");
  auto* o_edge_lpm = app.add_option("--edge-logins-per-minute", flags.edge_logins_per_minute,
                                    "sign-ins per client address [edge.logins_per_minute]");
  auto* o_edge_hub =
      app.add_option("--edge-hub", flags.edge_hub,
                     "run only the console, against this hub (HOST:PORT) [edge.hub]");
  auto* o_edge_hub_certs =
      app.add_option("--edge-hub-certs", flags.edge_hub_certs,
                     "ca.crt and agency-<id>.crt/.key for the remote hub's mTLS [edge.hub_certs]");
  auto* o_dwindow =
      app.add_option("--delivery-window", flags.delivery_window,
                     "events sent and unacknowledged per consumer [notification.window]");
  auto* o_admin_pub =
      app.add_option("--admin-public-key", flags.admin_public_key,
                     "the hub admin's public key (PEM), production [directory.admin_public_key]");
  auto* o_cert =
      app.add_option("--tls-cert", flags.tls_cert, "server certificate (PEM) [tls.cert]");
  auto* o_tkey = app.add_option("--tls-key", flags.tls_key, "server private key (PEM) [tls.key]");
  auto* o_ca = app.add_option("--tls-client-ca", flags.tls_client_ca,
                              "CA that signs client certificates [tls.client_ca]");
  auto* o_crl = app.add_option(
      "--tls-crl-dir", flags.tls_crl_dir,
      "directory of hashed CRL files; revoked client certificates are refused [tls.crl_dir]");
  auto* o_level =
      app.add_option("--log-level", flags.log_level, "debug, info, warn, error [log.level]");
  auto* o_format = app.add_option("--log-format", flags.log_format, "logfmt or json [log.format]");
#ifdef CARELOOP_UNSAFE_TEST_FLAGS
  // Only in builds with tests (CMake option CARELOOP_UNSAFE_TEST_FLAGS).
  auto* o_plfs = app.add_flag("--unsafe-power-loss-fs", flags.unsafe_power_loss_fs,
                              "TEST ONLY: keep unsynced bytes in memory so kill -9 loses them");
  auto* o_nosync =
      app.add_flag("--unsafe-no-sync", flags.unsafe_no_sync,
                   "TEST ONLY: acknowledge appends without fsync (crash-test negative control)");
  o_plfs->group("");  // hidden from --help
  o_nosync->group("");
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    *exit_now = true;
    *out = app.help();
    return HubConfig();
  } catch (const CLI::CallForVersion& e) {
    *exit_now = true;
    *out = "careloopd 0.1.0\n";
    return HubConfig();
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  HubConfig c;
  if (*o_config) {
    if (absl::Status s = LoadToml(config_path, &c); !s.ok()) return s;
  }
  if (*o_listen) c.listen = flags.listen;
  if (*o_services) c.services = SplitServices(services);
  if (*o_ledger) c.ledger_address = flags.ledger_address;
  if (*o_ledger_listen) c.ledger_listen = flags.ledger_listen;
  if (*o_msg) c.max_message_bytes = flags.max_message_bytes;
  if (*o_data) c.data_dir = flags.data_dir;
  if (*o_hub) c.hub_name = flags.hub_name;
  if (*o_key) c.log_key = flags.log_key;
  if (*o_queue) c.queue_capacity = flags.queue_capacity;
  if (*o_cache) c.block_cache_mb = flags.block_cache_mb;
  if (*o_payload) c.limits.max_payload_bytes = max_payload;
  if (*o_bevents) c.limits.max_batch_events = max_batch_events;
  if (*o_bbytes) c.limits.max_batch_bytes = max_batch_bytes;
  if (*o_read) c.limits.max_read_limit = static_cast<uint32_t>(max_read);
  if (*o_read_bytes) c.limits.max_read_bytes = max_read_bytes;
  if (*o_admin) c.admin_key = flags.admin_key;
  if (*o_admin_pub) c.admin_public_key = flags.admin_public_key;
  if (*o_codes) c.extra_service_codes = flags.extra_service_codes;
  if (*o_categories) c.extra_consent_categories = flags.extra_consent_categories;
  for (auto [opt, text, field, name] :
       std::vector<std::tuple<CLI::Option*, std::string*, absl::Duration*, const char*>>{
           {o_window, &window, &c.idempotency_window, "--idempotency-window"},
           {o_scrub, &scrub, &c.scrub_interval, "--scrub-interval"},
           {o_skew, &skew, &c.max_clock_skew, "--max-clock-skew"},
           {o_break_glass, &break_glass, &c.break_glass_default, "--break-glass-default"},
           {o_dstat, &deadline_stat, &c.deadline_stat, "--deadline-stat"},
           {o_dasap, &deadline_asap, &c.deadline_asap, "--deadline-asap"},
           {o_durgent, &deadline_urgent, &c.deadline_urgent, "--deadline-urgent"},
           {o_droutine, &deadline_routine, &c.deadline_routine, "--deadline-routine"},
           {o_escalation, &escalation, &c.escalation_interval, "--escalation-interval"},
           {o_ack, &ack_timeout, &c.ack_timeout, "--ack-timeout"},
           {o_wdisable, &webhook_disable_after, &c.webhook_disable_after,
            "--webhook-disable-after"}}) {
    if (!*opt) continue;
    if (absl::Status s = ParseDurationField(*text, name, field); !s.ok()) return s;
  }
  if (*o_attempts) c.max_attempts = flags.max_attempts;
  if (*o_dwindow) c.delivery_window = flags.delivery_window;
  if (*o_wkey) c.webhook_key = flags.webhook_key;
  if (*o_edge) c.edge_listen = flags.edge_listen;
  if (*o_edge_cert) c.edge_tls_cert = flags.edge_tls_cert;
  if (*o_edge_key) c.edge_tls_key = flags.edge_tls_key;
  if (*o_edge_rpm) c.edge_requests_per_minute = flags.edge_requests_per_minute;
  if (*o_edge_lpm) c.edge_logins_per_minute = flags.edge_logins_per_minute;
  if (*o_edge_hub) c.edge_hub = flags.edge_hub;
  if (*o_edge_hub_certs) c.edge_hub_certs = flags.edge_hub_certs;
  if (*o_cert) c.tls_cert = flags.tls_cert;
  if (*o_tkey) c.tls_key = flags.tls_key;
  if (*o_ca) c.tls_client_ca = flags.tls_client_ca;
  if (*o_crl) c.tls_crl_dir = flags.tls_crl_dir;
  if (*o_level) c.log_level = flags.log_level;
  if (*o_format) c.log_format = flags.log_format;
  c.unsafe_power_loss_fs = flags.unsafe_power_loss_fs;
  c.unsafe_no_sync = flags.unsafe_no_sync;
  if (absl::Status s = ValidateHubConfig(c); !s.ok()) return s;
  return c;
}

namespace {

// The console's address, HTTPS and limits, and the log's settings.
absl::Status ValidateConsoleAndLog(const HubConfig& c) {
  if (c.edge_requests_per_minute <= 0 || c.edge_logins_per_minute <= 0) {
    return absl::InvalidArgumentError("the console's rate limits must be positive");
  }
  if (!c.edge_public_url.empty() && !absl::StartsWith(c.edge_public_url, "https://") &&
      !absl::StartsWith(c.edge_public_url, "http://")) {
    return absl::InvalidArgumentError("edge.public_url is an http:// or https:// URL");
  }
  if (c.edge_tls_cert.empty() != c.edge_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "the console's HTTPS needs both --edge-tls-cert and --edge-tls-key");
  }
  if (!c.edge_address().empty() && c.edge_tls_cert.empty() &&
      !IsLoopbackAddress(c.edge_address())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to serve the console on ", c.edge_address(),
        " without HTTPS: set --edge-tls-cert and --edge-tls-key, or listen on loopback"));
  }
  log::Level level;
  log::Format format;
  if (!log::ParseLevel(c.log_level, &level))
    return absl::InvalidArgumentError("--log-level: debug, info, warn or error");
  if (!log::ParseFormat(c.log_format, &format))
    return absl::InvalidArgumentError("--log-format: logfmt or json");
  return absl::OkStatus();
}

// An edge run apart: the console's address and, without certificates, a
// hub on loopback (dev).
absl::Status ValidateEdgeOnly(const HubConfig& c) {
  if (c.data_dir.empty()) return absl::InvalidArgumentError("--data-dir is empty");
  if (c.edge_address().empty()) {
    return absl::InvalidArgumentError("an edge run apart (--edge-hub) needs --edge-listen");
  }
  if (c.edge_hub_certs.empty() && !IsLoopbackAddress(c.edge_hub)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--edge-hub ", c.edge_hub,
        " is not on loopback: give --edge-hub-certs (the CA and each agency's certificate)"));
  }
  return ValidateConsoleAndLog(c);
}

}  // namespace

absl::Status ValidateHubConfig(const HubConfig& c) {
  if (c.services.empty()) return absl::InvalidArgumentError("--services names no service");
  for (const std::string& s : c.services) {
    if (std::find(KnownServices().begin(), KnownServices().end(), s) == KnownServices().end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown service '", s, "'; known: all, ",
                                                     absl::StrJoin(KnownServices(), ", ")));
    }
  }
  if (c.edge_only()) return ValidateEdgeOnly(c);
  if (!c.runs("ledger") && c.ledger_address.empty()) {
    return absl::InvalidArgumentError(
        "the ledger is not among --services, so --ledger must name a remote LedgerService");
  }
  if (c.data_dir.empty()) return absl::InvalidArgumentError("--data-dir is empty");
  // The ledger is internal: a unix socket, or TCP only with mTLS (where the
  // hub's service certificate alone is admitted).
  const auto is_unix = [](const std::string& a) { return a.rfind("unix:", 0) == 0; };
  if (!c.ledger_listen.empty() && !is_unix(c.ledger_listen) && !c.tls()) {
    return absl::InvalidArgumentError(
        "the ledger listens on TCP only with TLS; in dev mode use its unix socket (the default)");
  }
  if (!c.ledger_address.empty() && !is_unix(c.ledger_address) && !c.tls()) {
    return absl::InvalidArgumentError(
        "a remote ledger over TCP needs TLS; in dev mode give its unix socket "
        "(--ledger unix:<data dir>/run/ledger.sock)");
  }
  for (absl::Duration d : {c.deadline_stat, c.deadline_asap, c.deadline_urgent, c.deadline_routine,
                           c.escalation_interval, c.ack_timeout, c.webhook_disable_after}) {
    if (d <= absl::ZeroDuration())
      return absl::InvalidArgumentError(
          "referral deadlines and intervals and notification.ack_timeout must be positive");
  }
  if (c.delivery_window < 1 || c.delivery_window > 10'000)
    return absl::InvalidArgumentError("notification.window must be 1 to 10000");
  if (c.max_attempts < 1 || c.max_attempts > 20)
    return absl::InvalidArgumentError("referral.max_attempts must be 1 to 20");
  if (c.block_cache_mb < 8 || c.block_cache_mb > (1 << 20)) {
    return absl::InvalidArgumentError("ledger.block_cache_mb must be 8 to 1048576");
  }
  if (c.break_glass_default <= absl::ZeroDuration() || c.break_glass_default > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        "consent.break_glass_default must be more than 0 and at most 24h");
  }
  for (const std::string& cat : c.extra_consent_categories) {
    if (cat.empty() || cat.size() > 64 ||
        cat.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("consent category '", cat, "' must be 1 to 64 of [a-z0-9-]"));
    }
  }
  if (c.idempotency_window < c.max_clock_skew) {
    // A retry must still find its original answer for as long as the hub would
    // accept the envelope anew; otherwise one message could be applied twice.
    return absl::InvalidArgumentError(absl::StrCat("ledger.idempotency_window (",
                                                   absl::FormatDuration(c.idempotency_window),
                                                   ") is shorter than envelope.max_clock_skew (",
                                                   absl::FormatDuration(c.max_clock_skew), ")"));
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (c.tls() && c.tls_client_ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs --tls-client-ca: careloop requires and verifies client certificates");
  }
  if (!c.tls() && !IsLoopbackAddress(c.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to serve ", c.listen,
        " without TLS: dev mode is for loopback addresses only. Configure [tls] for production."));
  }
  if (absl::Status s = ValidateConsoleAndLog(c); !s.ok()) return s;
  if (c.limits.max_batch_events == 0 || c.limits.max_payload_bytes == 0 || c.queue_capacity == 0 ||
      c.limits.max_read_bytes == 0) {
    return absl::InvalidArgumentError("limits must be positive");
  }
  if (c.max_message_bytes < c.limits.max_batch_bytes + (1 << 20)) {
    return absl::InvalidArgumentError(
        "max_message_bytes must exceed max_batch_bytes by at least 1 MiB (room for the envelope)");
  }
  // A read page holds max_read_bytes, or one event of max_payload_bytes.
  if (c.max_message_bytes <
      std::max(c.limits.max_read_bytes, c.limits.max_payload_bytes) + (1 << 20)) {
    return absl::InvalidArgumentError(
        "max_message_bytes must exceed max_read_bytes and max_payload_bytes by at least 1 MiB "
        "(a read page holds one or the other)");
  }
  return absl::OkStatus();
}

}  // namespace careloop::hub
