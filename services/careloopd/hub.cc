#include "services/careloopd/hub.h"

#include <fcntl.h>
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

#include "absl/strings/str_cat.h"
#include "services/common/log.h"
#include "services/common/status.h"
#include "storage/testing_fs.h"

namespace careloop::hub {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(const std::string& data_dir) {
  std::string path = data_dir + "/careloopd.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
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

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

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
  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data dir ", config.data_dir, ": ", ec.message()));
  }
  if (::access(config.data_dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("data dir ", config.data_dir, " is not readable and writable by this user"));
  }
  ASSIGN_OR_RETURN(hub->lock_, DataDirLock::Acquire(config.data_dir));

  if (config.runs("ledger")) {
    // The hub's log key: generated on first start in dev mode; production
    // (TLS) mode requires one that already exists.
    std::string key_path = config.log_key_path();
    bool generated = false;
    ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key,
                     HubKey(config, key_path, "the hub's log key", &generated));
    hub->signer_ = std::make_unique<trust::Ed25519HeadSigner>(config.hub_name, std::move(key));
    std::string vkey_path = fs::path(key_path).replace_extension(".vkey").string();
    {
      std::ofstream vk(vkey_path, std::ios::trunc);
      vk << hub->signer_->VerifierKey() << "\n";
    }
    out << (generated ? "careloopd: generated a dev log key at " : "careloopd: log key ")
        << key_path << "\ncareloopd: verifier key (public, give it to monitors) " << vkey_path
        << "\n";

    storage::LedgerOptions lo;
    lo.dir = config.ledger_dir();
    lo.hub_name = config.hub_name;
    lo.signer = hub->signer_.get();
    lo.idempotency_window = config.idempotency_window;
    lo.limits = config.limits;
    lo.queue_capacity = config.queue_capacity;
    lo.block_cache_bytes = config.block_cache_mb << 20;
    lo.unsafe_no_sync = config.unsafe_no_sync;
    if (config.unsafe_power_loss_fs) {
      hub->fs_ = std::make_shared<storage::PowerLossFileSystem>(rocksdb::FileSystem::Default());
      lo.fs = hub->fs_;
      log::Warn("careloopd.unsafe_mode", {{"mode", "power-loss-fs"}});
    }
    if (config.unsafe_no_sync) log::Warn("careloopd.unsafe_mode", {{"mode", "no-sync"}});
    ASSIGN_OR_RETURN(hub->ledger_, storage::LocalLedger::Open(std::move(lo)));
    hub->ledger_service_ =
        std::make_unique<ledger::LedgerGrpcService>(hub->ledger_.get(), config.tls());
  }

  const bool needs_referrals = config.runs("referral") || config.runs("notification");
  const bool needs_consent = config.runs("consent") || needs_referrals || config.runs("audit");
  if (config.runs("directory") || needs_consent) {
    // Both keep the directory as a projection of the ledger.
    storage::Ledger* ledger = hub->ledger_.get();
    if (ledger == nullptr) {
      std::shared_ptr<grpc::ChannelCredentials> channel_creds = grpc::InsecureChannelCredentials();
      if (config.tls()) {
        // Service to service: the hub's own certificate, verified by the same CA.
        grpc::SslCredentialsOptions o;
        ASSIGN_OR_RETURN(o.pem_root_certs, ReadFile(config.tls_client_ca));
        ASSIGN_OR_RETURN(o.pem_cert_chain, ReadFile(config.tls_cert));
        ASSIGN_OR_RETURN(o.pem_private_key, ReadFile(config.tls_key));
        channel_creds = grpc::SslCredentials(o);
      }
      hub->remote_ledger_ = std::make_unique<ledger::RemoteLedger>(
          grpc::CreateChannel(config.ledger_address, channel_creds), absl::Seconds(30));
      ledger = hub->remote_ledger_.get();
    }
    directory::HubAdmin admin;
    if (!config.admin_public_key.empty()) {
      ASSIGN_OR_RETURN(std::string pem, ReadFile(config.admin_public_key));
      ASSIGN_OR_RETURN(trust::Ed25519PublicKey pub, trust::Ed25519PublicKey::FromPem(pem));
      admin.public_key = pub.raw();
      out << "careloopd: hub admin public key " << config.admin_public_key << "\n";
    } else {
      std::string path = config.admin_key_path();
      if (config.tls() && !fs::exists(path)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "production needs the hub admin's public key: set directory.admin_public_key (", path,
            " does not exist)"));
      }
      fs::create_directories(fs::path(path).parent_path(), ec);
      bool generated = false;
      ASSIGN_OR_RETURN(trust::Ed25519PrivateKey key,
                       trust::LoadOrGeneratePrivateKeyFile(path, &generated));
      admin.public_key = key.public_key().raw();
      out << (generated ? "careloopd: generated a dev hub admin key at "
                        : "careloopd: hub admin key ")
          << path << " (sign as agency 'hub', user 'hub-admin', key id 'hub-admin-1')\n";
    }
    hub->directory_state_ = std::make_unique<directory::DirectoryState>(admin);
    hub->directory_runner_ =
        std::make_unique<storage::ProjectionRunner>(ledger, hub->directory_state_.get());
    RETURN_IF_ERROR(hub->directory_runner_->Start());
    // Serve only once the directory has caught up with the ledger.
    ASSIGN_OR_RETURN(v1::SignedHead head, ledger->Head(0));
    RETURN_IF_ERROR(hub->directory_runner_->WaitFor(head.tree_size(), absl::Minutes(5)));
    if (config.runs("directory")) {
      std::set<std::string> codes = directory::DefaultServiceCodes();
      codes.insert(config.extra_service_codes.begin(), config.extra_service_codes.end());
      hub->directory_core_ = std::make_unique<directory::DirectoryCore>(
          ledger, hub->directory_state_.get(), hub->directory_runner_.get(), SystemClock(),
          config.max_clock_skew, std::move(codes));
      hub->directory_service_ = std::make_unique<directory::DirectoryGrpcService>(
          hub->directory_core_.get(), config.tls());
    }
    if (needs_consent) {
      consent::ConsentOptions co;
      co.max_clock_skew = config.max_clock_skew;
      co.categories.insert(config.extra_consent_categories.begin(),
                           config.extra_consent_categories.end());
      co.default_break_glass = config.break_glass_default;
      hub->consent_core_ = std::make_unique<consent::ConsentCore>(
          ledger, hub->directory_state_.get(), hub->directory_runner_.get(), SystemClock(),
          std::move(co));
      if (config.runs("consent")) {
        hub->consent_service_ =
            std::make_unique<consent::ConsentGrpcService>(hub->consent_core_.get(), config.tls());
      }
    }
    if (needs_referrals) {
      // Referrals decide consent through the consent core in this process: it
      // keeps no state of its own, so it reads the same ledger as a consent
      // service elsewhere would.
      referral::ReferralOptions ro;
      ro.max_clock_skew = config.max_clock_skew;
      ro.deadline_stat = config.deadline_stat;
      ro.deadline_asap = config.deadline_asap;
      ro.deadline_urgent = config.deadline_urgent;
      ro.deadline_routine = config.deadline_routine;
      ro.default_max_attempts = config.max_attempts;
      ro.service_codes.insert(config.extra_service_codes.begin(), config.extra_service_codes.end());
      hub->referral_core_ = std::make_unique<referral::ReferralCore>(
          ledger, hub->directory_state_.get(), hub->directory_runner_.get(),
          hub->consent_core_.get(), SystemClock(), std::move(ro));
      if (config.runs("referral")) {
        hub->referral_service_ = std::make_unique<referral::ReferralGrpcService>(
            hub->referral_core_.get(), config.tls(), /*submit_inline=*/hub->ledger_ != nullptr);
      }
    }
    if (config.runs("audit")) {
      audit::AuditOptions ao;
      ao.hub_name = config.hub_name;
      hub->audit_core_ = std::make_unique<audit::AuditCore>(
          ledger, hub->directory_state_.get(), hub->consent_core_.get(), SystemClock(), ao);
      hub->audit_service_ =
          std::make_unique<audit::AuditGrpcService>(hub->audit_core_.get(), config.tls());
    }
    if (config.runs("notification")) {
      // Delivery renders referrals (consent checked again) with a referral
      // core of its own over the same ledger.
      notification::NotificationOptions no;
      no.ack_timeout = config.ack_timeout;
      no.window = config.delivery_window;
      hub->notification_core_ = std::make_unique<notification::NotificationCore>(
          ledger, hub->referral_core_.get(), SystemClock(), no);
      RETURN_IF_ERROR(hub->notification_core_->Start());
      // Webhooks are signed with a key of their own, never the log key.
      const std::string wpath = config.webhook_key_path();
      bool wgenerated = false;
      ASSIGN_OR_RETURN(trust::Ed25519PrivateKey wkey,
                       HubKey(config, wpath, "the webhook signing key", &wgenerated));
      out << (wgenerated ? "careloopd: generated a dev webhook key at " : "careloopd: webhook key ")
          << wpath << "\n";
      notification::WebhookOptions wo;
      wo.disable_after = config.webhook_disable_after;
      wo.max_clock_skew = config.max_clock_skew;
      hub->webhooks_ = std::make_unique<notification::Webhooks>(
          ledger, hub->notification_core_.get(), hub->directory_state_.get(), SystemClock(),
          std::move(wkey), notification::NewCurlPoster(), wo);
      hub->webhooks_->Start();
      hub->notification_service_ = std::make_unique<notification::NotificationGrpcService>(
          hub->notification_core_.get(), hub->webhooks_.get(), config.tls());
    }
  }

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, ServerCredentials(config));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, creds, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  if (hub->ledger_service_) builder.RegisterService(hub->ledger_service_.get());
  if (hub->directory_service_) builder.RegisterService(hub->directory_service_.get());
  if (hub->consent_service_) builder.RegisterService(hub->consent_service_.get());
  if (hub->referral_service_) builder.RegisterService(hub->referral_service_.get());
  if (hub->notification_service_) builder.RegisterService(hub->notification_service_.get());
  if (hub->audit_service_) builder.RegisterService(hub->audit_service_.get());
  hub->server_ = builder.BuildAndStart();
  if (!hub->server_ || port == 0) {
    if (hub->ledger_) hub->ledger_->Close().IgnoreError();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", config.listen, " (address in use, or not an address of this host)"));
  }
  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  hub->address_ = absl::StrCat(host, ":", port);
  hub->server_->GetHealthCheckService()->SetServingStatus(true);
  if (hub->referral_service_) {
    // Overdue referrals go to their next candidate; everything it needs is
    // in the ledger, so a restart loses nothing.
    Hub* h = hub.get();
    const absl::Duration every = config.escalation_interval;
    h->escalator_ = std::thread([h, every] {
      absl::MutexLock lock(&h->escalator_mu_);
      while (!h->escalator_stop_) {
        h->escalator_mu_.AwaitWithTimeout(absl::Condition(&h->escalator_stop_), every);
        if (h->escalator_stop_) break;
        absl::StatusOr<int> moved = h->referral_core_->Escalate();
        if (!moved.ok()) {
          log::Warn("careloopd.escalation_failed",
                    {{"cause", std::string(moved.status().message())}});
        } else if (*moved > 0) {
          log::Info("careloopd.escalated", {{"referrals", *moved}});
        }
      }
    });
  }
  if (!config.tls()) {
    out << "careloopd: DEV MODE: no TLS, serving on loopback only\n";
  }
  log::Info("careloopd.serving",
            {{"address", hub->address_}, {"tls", config.tls()}, {"data_dir", config.data_dir}});
  return hub;
}

void Hub::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (!server_ && !ledger_ && !directory_runner_) return;  // never started
  log::Info("careloopd.shutdown_started");
  // Open subscriptions end first, so the server's shutdown need not wait
  // for them.
  if (notification_core_) notification_core_->Stop();
  if (webhooks_) webhooks_->Stop();
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
    server_->Wait();
  }
  if (escalator_.joinable()) {
    {
      absl::MutexLock lock(&escalator_mu_);
      escalator_stop_ = true;
    }
    escalator_.join();
  }
  if (directory_runner_) directory_runner_->Stop();
  audit_service_.reset();
  audit_core_.reset();
  notification_service_.reset();
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
