#include "services/careloopd/hub.h"

#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/crypto.h"
#include "base/file.h"
#include "base/log.h"
#include "base/status.h"
#include "services/edge/demo_seed.h"
#include "services/edge/edge_backup.h"
#include "storage/ledger_db.h"
#include "storage/testing_fs.h"

namespace careloop::hub {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(const std::string& data_dir) {
  std::string path = data_dir + "/careloopd.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": ", ErrnoMessage(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", data_dir, " is locked by another careloopd (pid ", holder,
                     "); stop it first or choose another --data-dir"));
  }
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
}

DataDirLock::~DataDirLock() {
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const HubConfig& c) {
  if (!c.tls()) return grpc::InsecureServerCredentials();
  ASSIGN_OR_RETURN(std::string cert, ReadFile(c.tls_cert));
  ASSIGN_OR_RETURN(std::string key, ReadFile(c.tls_key));
  ASSIGN_OR_RETURN(std::string ca, ReadFile(c.tls_client_ca));
  // Client certificates are required and verified against the deployment CA;
  // with a CRL directory, revoked ones are refused at the handshake.
  std::vector<grpc::experimental::IdentityKeyCertPair> pairs = {{key, cert}};
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(ca, pairs);
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_root_certs();
  opts.watch_identity_key_cert_pairs();
  opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!c.tls_crl_dir.empty()) opts.set_crl_directory(c.tls_crl_dir);
  return grpc::experimental::TlsServerCredentials(opts);
}

// One of the hub's own keys: generated on first start in dev mode;
// production (TLS) requires one that already exists.
absl::StatusOr<trust::Ed25519PrivateKey> HubKey(const HubConfig& config, const std::string& path,
                                                const std::string& what, bool* generated) {
  if (config.tls() && !fs::exists(path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " ", path,
        " does not exist; in production create it first (careloop keys generate --out ", path,
        ")"));
  }
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  return trust::LoadOrGeneratePrivateKeyFile(path, generated);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Hub>> Hub::Start(const HubConfig& config, std::ostream& out) {
  std::unique_ptr<Hub> hub(new Hub());
  hub->config_ = config;
  RETURN_IF_ERROR(hub->OpenDataDir());
  if (config.edge_only()) {
    // Only the console, calling the hub at edge.hub as the agencies it serves.
    RETURN_IF_ERROR(hub->StartEdge(out));
    log::Info("careloopd.edge_only", {{"hub", config.edge_hub}, {"address", hub->address_}});
    return hub;
  }
  storage::Ledger* ledger = nullptr;
  if (config.runs("ledger")) {
    ASSIGN_OR_RETURN(ledger, hub->StartLedger(out));
  }
  const bool needs_referrals = config.runs("referral") || config.runs("notification");
  const bool needs_consent = config.runs("consent") || needs_referrals || config.runs("audit");
  if (config.runs("directory") || needs_consent) {
    // Every service past the ledger keeps the directory as a projection.
    if (ledger == nullptr) {
      ASSIGN_OR_RETURN(ledger, hub->ConnectLedger());
    }
    RETURN_IF_ERROR(hub->StartDirectory(ledger, out));
    if (needs_consent) hub->StartConsent(ledger);
    if (needs_referrals) hub->StartReferrals(ledger);
    if (config.runs("audit")) hub->StartAudit(ledger);
    if (config.runs("notification")) RETURN_IF_ERROR(hub->StartNotification(ledger, out));
  }
  RETURN_IF_ERROR(hub->Serve());
  RETURN_IF_ERROR(hub->StartEdge(out));
  if (hub->referral_service_) hub->StartEscalation();
  hub->StartHealthWatch();
  if (!config.tls()) {
    out << "careloopd: DEV MODE: no TLS, serving on loopback only\n";
  }
  log::Info("careloopd.serving",
            {{"address", hub->address_}, {"tls", config.tls()}, {"data_dir", config.data_dir}});
  return hub;
}

absl::Status Hub::OpenDataDir() {
  std::error_code ec;
  fs::create_directories(config_.data_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data dir ", config_.data_dir, ": ", ec.message()));
  }
  if (::access(config_.data_dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("data dir ", config_.data_dir, " is not readable and writable by this user"));
  }
  ASSIGN_OR_RETURN(lock_, DataDirLock::Acquire(config_.data_dir));
  return absl::OkStatus();
}

absl::StatusOr<storage::Ledger*> Hub::StartLedger(std::ostream& out) {
  const HubConfig& config = config_;
  // The hub's log key: generated on first start in dev mode; production
  // (TLS) mode requires one that already exists.
  std::string key_path = config.log_key_path();
  bool generated = false;
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key,
                   HubKey(config, key_path, "the hub's log key", &generated));
  signer_ = std::make_unique<trust::Ed25519HeadSigner>(config.hub_name, std::move(key));
  const fs::path vkey_path = fs::path(key_path).replace_extension(".vkey");
  // Rewritten only when it differs, and never truncated in place: a start
  // on a full disk must not leave monitors an empty key file.
  const std::string vkey = signer_->VerifierKey() + "\n";
  absl::StatusOr<std::string> on_disk = ReadFile(vkey_path.string());
  if (!on_disk.ok() || *on_disk != vkey) {
    RETURN_IF_ERROR(storage::WriteFileDurably(rocksdb::FileSystem::Default().get(),
                                              vkey_path.parent_path().string(),
                                              vkey_path.filename().string(), vkey));
  }
  out << (generated ? "careloopd: generated a dev log key at " : "careloopd: log key ") << key_path
      << "\ncareloopd: verifier key (public, give it to monitors) " << vkey_path.string() << "\n";

  storage::LedgerOptions lo;
  lo.dir = config.ledger_dir();
  lo.hub_name = config.hub_name;
  lo.signer = signer_.get();
  lo.idempotency_window = config.idempotency_window;
  lo.scrub_interval = config.scrub_interval;
  ASSIGN_OR_RETURN(log_verifier_,
                   trust::Ed25519NoteVerifier::FromVerifierKey(signer_->VerifierKey()));
  lo.verifier = log_verifier_.get();
  lo.limits = config.limits;
  lo.queue_capacity = config.queue_capacity;
  lo.block_cache_bytes = config.block_cache_mb << 20;
  lo.unsafe_no_sync = config.unsafe_no_sync;
  if (config.unsafe_power_loss_fs) {
    fs_ = std::make_shared<storage::PowerLossFileSystem>(rocksdb::FileSystem::Default());
    lo.fs = fs_;
    log::Warn("careloopd.unsafe_mode", {{"mode", "power-loss-fs"}});
  }
  if (config.unsafe_no_sync) log::Warn("careloopd.unsafe_mode", {{"mode", "no-sync"}});
  ASSIGN_OR_RETURN(ledger_, storage::LocalLedger::Open(std::move(lo)));
  RETURN_IF_ERROR(ServeLedger(out));
  return ledger_.get();
}

absl::Status Hub::ServeLedger(std::ostream& out) {
  const std::string address = config_.ledger_listen_address();
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  ledger::LedgerGrpcService::Transport transport =
      ledger::LedgerGrpcService::Transport::kUnixSocket;
  if (address.rfind("unix:", 0) == 0) {
    // Only the hub's own user reaches a socket in a 0700 directory.
    const fs::path socket = address.substr(5);
    std::error_code ec;
    fs::create_directories(socket.parent_path(), ec);
    fs::permissions(socket.parent_path(), fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot make ", socket.parent_path().string(), " private: ", ec.message()));
    }
    fs::remove(socket, ec);  // a socket left by a killed careloopd (we hold the data dir lock)
  } else {
    ASSIGN_OR_RETURN(creds, ServerCredentials(config_));  // ValidateHubConfig: TLS is on
    transport = ledger::LedgerGrpcService::Transport::kMutualTls;
  }
  ledger_service_ = std::make_unique<ledger::LedgerGrpcService>(ledger_.get(), transport);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, creds, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.RegisterService(ledger_service_.get());
  ledger_server_ = builder.BuildAndStart();
  if (!ledger_server_) {
    ledger_->Close().IgnoreError();
    return absl::UnavailableError(absl::StrCat("the ledger cannot listen on ", address));
  }
  ledger_address_ = transport == ledger::LedgerGrpcService::Transport::kUnixSocket
                        ? address
                        : absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
  out << "careloopd: ledger on " << ledger_address_
      << " (internal: the hub's services and operators only)\n";
  return absl::OkStatus();
}

absl::StatusOr<storage::Ledger*> Hub::ConnectLedger() {
  std::shared_ptr<grpc::ChannelCredentials> channel_creds = grpc::InsecureChannelCredentials();
  if (config_.tls() && config_.ledger_address.rfind("unix:", 0) != 0) {
    // Service to service: the hub's own certificate, verified by the same CA.
    grpc::SslCredentialsOptions o;
    ASSIGN_OR_RETURN(o.pem_root_certs, ReadFile(config_.tls_client_ca));
    ASSIGN_OR_RETURN(o.pem_cert_chain, ReadFile(config_.tls_cert));
    ASSIGN_OR_RETURN(o.pem_private_key, ReadFile(config_.tls_key));
    channel_creds = grpc::SslCredentials(o);
  }
  if (config_.ledger_address.rfind("unix:", 0) == 0) {
    channel_creds = grpc::InsecureChannelCredentials();  // the socket's directory is the check
  }
  // A read page holds at most ledger.max_read_bytes, or one event of up to
  // max_payload_bytes: both below max_message_bytes (config.cc checks).
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(config_.max_message_bytes));
  remote_ledger_ = std::make_unique<ledger::RemoteLedger>(
      grpc::CreateCustomChannel(config_.ledger_address, channel_creds, args), absl::Seconds(30));
  return remote_ledger_.get();
}

absl::StatusOr<std::string> Hub::EdgeKek(std::ostream& out) const {
  absl::StatusOr<std::string> kek = edge::KekFromEnvironment();
  if (kek.ok() || !absl::IsNotFound(kek.status())) return kek;
  if (!config_.edge_dev()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the console holds the agencies' keys encrypted under a key-encryption key: set ",
        edge::kKekEnvironmentVariable, " (openssl rand -base64 32), or --edge-listen off"));
  }
  // Dev mode: one kept beside the keys it protects (production never does).
  const std::string path = config_.edge_dir() + "/dev-kek";
  if (absl::StatusOr<std::string> kept = ReadFile(path); kept.ok()) return kept;
  const std::string made = HexEncode(RandomBytes(32));
  RETURN_IF_ERROR(WriteFileAtomically(path, made, 0600));
  out << "careloopd: generated a dev key-encryption key for the console at " << path << "\n";
  return made;
}

absl::Status Hub::StartEdge(std::ostream& out) {
  const std::string address = config_.edge_address();
  if (address.empty()) return absl::OkStatus();
  if (!config_.edge_only() &&
      (!referral_core_ || !consent_core_ || !directory_core_ || !notifications_)) {
    if (config_.edge_listen.empty()) return absl::OkStatus();  // only the dev default
    return absl::InvalidArgumentError(
        "the console runs in the process that runs the directory, consent, referral and "
        "notification services, or alone with --edge-hub");
  }
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("--edge-listen ", address, ": not HOST:PORT"));
  }
  std::error_code ec;
  fs::create_directories(config_.edge_dir(), ec);
  fs::permissions(config_.edge_dir(), fs::perms::owner_all, fs::perm_options::replace, ec);
  ASSIGN_OR_RETURN(std::string kek, EdgeKek(out));
  ASSIGN_OR_RETURN(edge::KeyCustody keys,
                   edge::KeyCustody::Open(config_.edge_dir() + "/keys", kek));
  edge_keys_ = std::make_unique<edge::KeyCustody>(std::move(keys));
  ASSIGN_OR_RETURN(edge_accounts_,
                   edge::StaffAccounts::Open(config_.edge_dir() + "/staff", kek, SystemClock()));
  if (config_.edge_only()) {
    edge_hub_ = std::make_unique<edge::GrpcHub>(
        edge::RemoteHubOptions{config_.edge_hub, config_.edge_hub_certs, absl::Seconds(30)});
  } else {
    edge_hub_ = std::make_unique<edge::InProcessHub>(
        edge::HubCores{referral_core_.get(), consent_core_.get(), directory_core_.get(),
                       notifications_.get(), audit_core_.get()});
  }
  edge_desk_ = std::make_unique<edge::Desk>(edge_hub_.get(), edge_keys_.get(), SystemClock());
  edge_feed_ = std::make_unique<edge::ChangeFeed>(edge_hub_.get());
  edge_signer_ = std::make_unique<edge::Signer>(edge_hub_.get(), edge_keys_.get(), SystemClock());
  edge_staff_ =
      std::make_unique<edge::StaffAdmin>(edge_hub_.get(), edge_signer_.get(), edge_accounts_.get());
  ASSIGN_OR_RETURN(std::vector<std::string> served, edge_keys_->Agencies());
  for (const std::string& agency : served) edge_feed_->Follow(agency);

  edge::EdgeHttpOptions options;
  options.host = address.substr(0, colon);
  if (absl::StartsWith(options.host, "["))
    options.host = options.host.substr(1, options.host.size() - 2);
  options.port = port;
  options.tls_cert_file = config_.edge_tls_cert;
  options.tls_key_file = config_.edge_tls_key;
  options.requests_per_minute = config_.edge_requests_per_minute;
  options.logins_per_minute = config_.edge_logins_per_minute;
  if (ledger_service_) {
    // `careloop ledger backup` takes the edge's accounts and keys along.
    ledger_service_->AlsoBackUp([this](const std::string& dir) {
      return edge::BackupEdge(config_.edge_dir(), edge_accounts_.get(),
                              (fs::path(dir) / edge::kEdgeBackupDir).string());
    });
  }
  // The monitor checks the log with the hub's verifier key: this hub's own,
  // or, for an edge apart, hub-log.vkey beside its certificates (or in its
  // data dir in dev mode).
  std::string vkey;
  if (signer_) {
    vkey = signer_->VerifierKey();
  } else {
    const std::string dir =
        config_.edge_hub_certs.empty() ? config_.data_dir : config_.edge_hub_certs;
    if (absl::StatusOr<std::string> k = ReadFile(dir + "/hub-log.vkey"); k.ok()) vkey = *k;
  }
  edge_privacy_ = std::make_unique<edge::PrivacyDesk>(
      edge_hub_.get(), edge_signer_.get(), SystemClock(), vkey, config_.edge_dir() + "/monitor");
  // The FHIR API: systems registered in <edge dir>/fhir-clients (careloop
  // edge fhir-client), tokens for <public url>/fhir/R4/auth/token.
  const std::string public_url = config_.edge_public_url.empty()
                                     ? absl::StrCat("http://", address)  // set once bound
                                     : config_.edge_public_url;
  edge_smart_ = std::make_unique<edge::SmartAuth>(
      edge::SmartOptions{config_.edge_dir() + "/fhir-clients",
                         absl::StrCat(public_url, "/fhir/R4/auth/token")},
      SystemClock());
  edge_fhir_ = std::make_unique<edge::fhir::FhirApi>(
      edge_hub_.get(), edge_desk_.get(), SystemClock(), absl::StrCat(public_url, "/fhir/R4"));
  edge::EdgeParts parts{
      edge_accounts_.get(), edge_desk_.get(), edge_feed_.get(),  edge_staff_.get(),
      edge_privacy_.get(),  edge_fhir_.get(), edge_smart_.get(), nullptr};
  if (config_.edge_dev() && fs::exists(config_.admin_key_path())) {
    // Dev mode: careloop demo seed, for whoever can read the data dir.
    ASSIGN_OR_RETURN(std::string pem, ReadFile(config_.admin_key_path()));
    ASSIGN_OR_RETURN(trust::Ed25519PrivateKey admin, trust::Ed25519PrivateKey::FromPem(pem));
    edge_seed_key_ = std::make_unique<trust::Ed25519PrivateKey>(std::move(admin));
    options.dev_seed_token = HexEncode(RandomBytes(32));
    RETURN_IF_ERROR(
        WriteFileAtomically(config_.edge_dir() + "/dev-seed-token", options.dev_seed_token, 0600));
    parts.dev_seed = [this]() {
      return edge::SeedDemo(
          edge::DemoSeedParts{edge_hub_.get(), edge_keys_.get(), edge_accounts_.get(),
                              edge_desk_.get(), edge_feed_.get(), edge_seed_key_.get(),
                              SystemClock(), config_.edge_dir() + "/demo-logins.json"});
    };
  }
  edge_http_ =
      std::make_unique<edge::EdgeHttp>(std::move(options), std::move(parts), SystemClock());
  const std::string bound_host = address.substr(0, colon);
  RETURN_IF_ERROR(edge_http_->Start([this, bound_host](int bound) {
    if (!config_.edge_public_url.empty()) return;
    // The address as bound (a free port when asked for port 0).
    const std::string url = absl::StrCat(edge_http_->tls() ? "https://" : "http://", bound_host,
                                         ":", bound, "/fhir/R4");
    edge_smart_->set_token_url(url + "/auth/token");
    edge_fhir_->set_base_url(url);
  }));
  console_url_ = absl::StrCat(edge_http_->tls() ? "https://" : "http://", address.substr(0, colon),
                              ":", edge_http_->port(), "/");
  if (config_.edge_only())
    address_ = absl::StrCat(address.substr(0, colon), ":", edge_http_->port());
  out << "careloopd: console on " << console_url_ << " (agencies served: " << served.size()
      << ")\n";
  return absl::OkStatus();
}

absl::StatusOr<directory::HubAdmin> Hub::LoadHubAdmin(std::ostream& out) const {
  const HubConfig& config = config_;
  directory::HubAdmin admin;
  if (!config.admin_public_key.empty()) {
    ASSIGN_OR_RETURN(std::string pem, ReadFile(config.admin_public_key));
    ASSIGN_OR_RETURN(trust::Ed25519PublicKey pub, trust::Ed25519PublicKey::FromPem(pem));
    admin.public_key = pub.raw();
    out << "careloopd: hub admin public key " << config.admin_public_key << "\n";
    return admin;
  }
  std::string path = config.admin_key_path();
  if (config.tls() && !fs::exists(path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "production needs the hub admin's public key: set directory.admin_public_key (", path,
        " does not exist)"));
  }
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  bool generated = false;
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key,
                   trust::LoadOrGeneratePrivateKeyFile(path, &generated));
  admin.public_key = key.public_key().raw();
  out << (generated ? "careloopd: generated a dev hub admin key at " : "careloopd: hub admin key ")
      << path << " (sign as agency 'hub', user 'hub-admin', key id 'hub-admin-1')\n";
  return admin;
}

absl::Status Hub::StartDirectory(storage::Ledger* ledger, std::ostream& out) {
  ASSIGN_OR_RETURN(directory::HubAdmin admin, LoadHubAdmin(out));
  directory_state_ = std::make_unique<directory::DirectoryState>(admin);
  directory_runner_ = std::make_unique<storage::ProjectionRunner>(ledger, directory_state_.get());
  RETURN_IF_ERROR(directory_runner_->Start());
  // Serve only once the directory has caught up with the ledger.
  ASSIGN_OR_RETURN(v1::SignedHead head, ledger->Head(0));
  RETURN_IF_ERROR(directory_runner_->WaitFor(head.tree_size(), absl::Minutes(5)));
  if (!config_.runs("directory")) return absl::OkStatus();
  std::set<std::string> codes = directory::DefaultServiceCodes();
  codes.insert(config_.extra_service_codes.begin(), config_.extra_service_codes.end());
  directory_core_ = std::make_unique<directory::DirectoryCore>(
      ledger, directory_state_.get(), directory_runner_.get(), SystemClock(),
      config_.max_clock_skew, std::move(codes));
  directory_service_ = std::make_unique<directory::DirectoryGrpcService>(
      directory_core_.get(), directory_state_.get(), config_.tls());
  return absl::OkStatus();
}

void Hub::StartConsent(storage::Ledger* ledger) {
  consent::ConsentOptions co;
  co.max_clock_skew = config_.max_clock_skew;
  co.categories.insert(config_.extra_consent_categories.begin(),
                       config_.extra_consent_categories.end());
  co.default_break_glass = config_.break_glass_default;
  consent_core_ = std::make_unique<consent::ConsentCore>(
      ledger, directory_state_.get(), directory_runner_.get(), SystemClock(), std::move(co));
  if (config_.runs("consent")) {
    consent_service_ = std::make_unique<consent::ConsentGrpcService>(
        consent_core_.get(), directory_state_.get(), config_.tls());
  }
}

void Hub::StartReferrals(storage::Ledger* ledger) {
  // Referrals decide consent through the consent core in this process: it
  // keeps no state of its own, so it reads the same ledger as a consent
  // service elsewhere would.
  referral::ReferralOptions ro;
  ro.max_clock_skew = config_.max_clock_skew;
  ro.deadline_stat = config_.deadline_stat;
  ro.deadline_asap = config_.deadline_asap;
  ro.deadline_urgent = config_.deadline_urgent;
  ro.deadline_routine = config_.deadline_routine;
  ro.default_max_attempts = config_.max_attempts;
  ro.service_codes.insert(config_.extra_service_codes.begin(), config_.extra_service_codes.end());
  referral_core_ = std::make_unique<referral::ReferralCore>(
      ledger, directory_state_.get(), directory_runner_.get(), consent_core_.get(), SystemClock(),
      std::move(ro));
  if (config_.runs("referral")) {
    referral_service_ = std::make_unique<referral::ReferralGrpcService>(
        referral_core_.get(), directory_state_.get(), config_.tls(),
        /*submit_inline=*/ledger_ != nullptr);
  }
}

void Hub::StartAudit(storage::Ledger* ledger) {
  audit::AuditOptions ao;
  ao.hub_name = config_.hub_name;
  audit_core_ = std::make_unique<audit::AuditCore>(ledger, directory_state_.get(),
                                                   consent_core_.get(), SystemClock(), ao);
  audit_service_ = std::make_unique<audit::AuditGrpcService>(audit_core_.get(), config_.tls());
}

absl::Status Hub::StartNotification(storage::Ledger* ledger, std::ostream& out) {
  // Delivery renders referrals (consent checked again) with a referral
  // core of its own over the same ledger.
  notification::NotificationOptions no;
  no.ack_timeout = config_.ack_timeout;
  no.window = config_.delivery_window;
  notification_core_ = std::make_unique<notification::NotificationCore>(
      ledger, referral_core_.get(), SystemClock(), no);
  RETURN_IF_ERROR(notification_core_->Start());
  // Webhooks are signed with a key of their own, never the log key.
  const std::string wpath = config_.webhook_key_path();
  bool wgenerated = false;
  ASSIGN_OR_RETURN(trust::Ed25519PrivateKey wkey,
                   HubKey(config_, wpath, "the webhook signing key", &wgenerated));
  out << (wgenerated ? "careloopd: generated a dev webhook key at " : "careloopd: webhook key ")
      << wpath << "\n";
  notification::WebhookOptions wo;
  wo.disable_after = config_.webhook_disable_after;
  wo.max_clock_skew = config_.max_clock_skew;
  // Dev mode (no TLS) may deliver to loopback and private hosts; production
  // only to public ones and the operator's allow-list.
  wo.outbound = notification::OutboundPolicy{!config_.tls(), config_.outbound_allow_hosts};
  webhooks_ = std::make_unique<notification::Webhooks>(
      ledger, notification_core_.get(), directory_state_.get(), SystemClock(), std::move(wkey),
      notification::NewCurlPoster(wo.outbound), wo);
  webhooks_->Start();
  notifications_ = std::make_unique<notification::Notifications>(
      notification_core_.get(), webhooks_.get(), directory_state_.get());
  notification_service_ = std::make_unique<notification::NotificationGrpcService>(
      notifications_.get(), directory_state_.get(), config_.tls());
  return absl::OkStatus();
}

absl::Status Hub::Serve() {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, ServerCredentials(config_));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.listen, creds, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.max_message_bytes));
  // Never the ledger: it has its own listener (ServeLedger).
  for (grpc::Service* s : std::initializer_list<grpc::Service*>{
           directory_service_.get(), consent_service_.get(), referral_service_.get(),
           notification_service_.get(), audit_service_.get()}) {
    if (s != nullptr) builder.RegisterService(s);
  }
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    if (ledger_) ledger_->Close().IgnoreError();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", config_.listen, " (address in use, or not an address of this host)"));
  }
  std::string host = config_.listen.substr(0, config_.listen.rfind(':'));
  address_ = absl::StrCat(host, ":", port);
  server_->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

// What makes this hub unable to serve writes or current reads: the
// ledger's writer stopped (a failed write or fsync, a full disk), or the
// directory projection stopped on damage. OK while neither.
absl::Status Hub::Failure() const {
  if (ledger_) RETURN_IF_ERROR(ledger_->writer_status());
  if (directory_runner_) RETURN_IF_ERROR(directory_runner_->status());
  return absl::OkStatus();
}

void Hub::StartHealthWatch() {
  // Health goes NOT_SERVING once the hub fails stop, so load balancers and
  // monitors see it; reads keep being answered.
  health_watch_ = std::thread([this] {
    absl::MutexLock lock(&escalator_mu_);
    while (!escalator_stop_) {
      escalator_mu_.AwaitWithTimeout(absl::Condition(&escalator_stop_), absl::Seconds(1));
      if (escalator_stop_) break;
      absl::Status failed = Failure();
      if (failed.ok()) continue;
      if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
      log::Error("careloopd.not_serving", {{"cause", std::string(failed.message())}});
      break;
    }
  });
}

void Hub::StartEscalation() {
  // Overdue referrals go to their next candidate; everything it needs is in
  // the ledger, so a restart loses nothing.
  const absl::Duration every = config_.escalation_interval;
  escalator_ = std::thread([this, every] {
    absl::MutexLock lock(&escalator_mu_);
    while (!escalator_stop_) {
      escalator_mu_.AwaitWithTimeout(absl::Condition(&escalator_stop_), every);
      if (escalator_stop_) break;
      absl::StatusOr<int> moved = referral_core_->Escalate();
      if (!moved.ok()) {
        log::Warn("careloopd.escalation_failed",
                  {{"cause", std::string(moved.status().message())}});
      } else if (*moved > 0) {
        log::Info("careloopd.escalated", {{"referrals", *moved}});
      }
    }
  });
}

void Hub::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (!server_ && !ledger_ && !directory_runner_ && !ledger_server_ && !edge_http_) {
    return;  // never started
  }
  log::Info("careloopd.shutdown_started");
  // The console first: it calls the cores below.
  if (edge_http_) edge_http_->Stop();
  if (ledger_service_) ledger_service_->AlsoBackUp(nullptr);  // waits for a backup writing it
  if (edge_feed_) edge_feed_->Stop();
  edge_http_.reset();
  edge_feed_.reset();
  edge_staff_.reset();
  edge_privacy_.reset();
  edge_signer_.reset();
  edge_desk_.reset();
  edge_hub_.reset();
  edge_accounts_.reset();
  // Open subscriptions end first, so the server's shutdown need not wait
  // for them.
  if (notification_core_) notification_core_->Stop();
  if (webhooks_) webhooks_->Stop();
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
    server_->Wait();
  }
  if (ledger_server_) {
    // After the agencies' listener: split services elsewhere may still be
    // finishing calls that append.
    ledger_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ledger_server_->Wait();
  }
  {
    absl::MutexLock lock(&escalator_mu_);
    escalator_stop_ = true;
  }
  if (escalator_.joinable()) escalator_.join();
  if (health_watch_.joinable()) health_watch_.join();
  if (directory_runner_) directory_runner_->Stop();
  audit_service_.reset();
  audit_core_.reset();
  notification_service_.reset();
  notifications_.reset();
  webhooks_.reset();
  notification_core_.reset();
  referral_service_.reset();
  referral_core_.reset();
  consent_service_.reset();
  consent_core_.reset();
  directory_service_.reset();
  directory_core_.reset();
  directory_runner_.reset();
  directory_state_.reset();
  remote_ledger_.reset();
  if (ledger_) {
    absl::Status s = ledger_->Close();
    if (!s.ok()) log::Warn("careloopd.ledger_close", {{"cause", std::string(s.message())}});
  }
  ledger_.reset();
  lock_.reset();
  log::Info("careloopd.shutdown_complete");
}

Hub::~Hub() { Shutdown(); }

}  // namespace careloop::hub
