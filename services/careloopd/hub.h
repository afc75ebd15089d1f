// Wiring only: opens the data dir, the ledger and the gRPC server for the
// services named in the config, and shuts them down in order.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <ostream>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "services/audit/audit_grpc_service.h"
#include "services/careloopd/config.h"
#include "services/consent/consent_grpc_service.h"
#include "services/directory/directory_grpc_service.h"
#include "services/edge/change_feed.h"
#include "services/edge/desk.h"
#include "services/edge/edge_http.h"
#include "services/edge/fhir_api.h"
#include "services/edge/grpc_hub.h"
#include "services/edge/in_process_hub.h"
#include "services/edge/key_custody.h"
#include "services/edge/smart_auth.h"
#include "services/edge/staff_accounts.h"
#include "services/ledger/ledger_grpc_service.h"
#include "services/ledger/remote_ledger.h"
#include "services/notification/notification_grpc_service.h"
#include "services/referral/referral_grpc_service.h"
#include "services/trust/head_signer.h"
#include "storage/local_ledger.h"

namespace careloop::hub {

// An exclusive lock on <data_dir>/careloopd.lock, held while the hub runs, so
// that a second careloopd on the same data dir refuses to start and says which
// process holds it.
class DataDirLock {
 public:
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir);
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

class Hub {
 public:
  // Starts everything; `out` gets the lines a person reads at start (where it
  // listens, where the keys are).
  static absl::StatusOr<std::unique_ptr<Hub>> Start(const HubConfig& config, std::ostream& out);
  ~Hub();

  // Health NOT_SERVING, stop accepting, finish in-flight calls (with a
  // deadline), drain the ledger writer, close the database, release the lock.
  void Shutdown();
  const std::string& address() const { return address_; }
  // The ledger's own listener ("" when the ledger runs elsewhere).
  const std::string& ledger_address() const { return ledger_address_; }
  // The console's URL ("" when the edge does not run).
  const std::string& console_url() const { return console_url_; }

 private:
  Hub() = default;
  // One builder per service, in the order Start calls them; each keeps what
  // it makes in the members below.
  absl::Status OpenDataDir();
  absl::StatusOr<storage::Ledger*> StartLedger(std::ostream& out);
  absl::Status ServeLedger(std::ostream& out);       // the ledger's own listener
  absl::StatusOr<storage::Ledger*> ConnectLedger();  // the ledger runs elsewhere
  absl::StatusOr<directory::HubAdmin> LoadHubAdmin(std::ostream& out) const;
  absl::Status StartDirectory(storage::Ledger* ledger, std::ostream& out);
  void StartConsent(storage::Ledger* ledger);
  void StartReferrals(storage::Ledger* ledger);
  void StartAudit(storage::Ledger* ledger);
  absl::Status StartNotification(storage::Ledger* ledger, std::ostream& out);
  absl::Status Serve();
  // The agency edge (console), in process: needs every agency-facing
  // service here. Dev mode makes its key-encryption key and the demo seed's
  // token in the data dir.
  absl::Status StartEdge(std::ostream& out);
  absl::StatusOr<std::string> EdgeKek(std::ostream& out) const;
  void StartEscalation();
  void StartHealthWatch();
  absl::Status Failure() const;

  HubConfig config_;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::unique_ptr<trust::Ed25519NoteVerifier> log_verifier_;  // the scrub's
  std::shared_ptr<rocksdb::FileSystem> fs_;
  std::unique_ptr<storage::LocalLedger> ledger_;
  std::unique_ptr<ledger::LedgerGrpcService> ledger_service_;
  std::unique_ptr<ledger::RemoteLedger> remote_ledger_;  // when the ledger runs elsewhere
  std::unique_ptr<directory::DirectoryState> directory_state_;
  std::unique_ptr<storage::ProjectionRunner> directory_runner_;
  std::unique_ptr<directory::DirectoryCore> directory_core_;
  std::unique_ptr<directory::DirectoryGrpcService> directory_service_;
  std::unique_ptr<consent::ConsentCore> consent_core_;
  std::unique_ptr<consent::ConsentGrpcService> consent_service_;
  std::unique_ptr<referral::ReferralCore> referral_core_;
  std::unique_ptr<referral::ReferralGrpcService> referral_service_;
  std::unique_ptr<notification::NotificationCore> notification_core_;
  std::unique_ptr<audit::AuditCore> audit_core_;
  std::unique_ptr<audit::AuditGrpcService> audit_service_;
  std::unique_ptr<notification::Webhooks> webhooks_;
  std::unique_ptr<notification::Notifications> notifications_;
  std::unique_ptr<notification::NotificationGrpcService> notification_service_;
  std::thread escalator_;
  std::thread health_watch_;  // shares escalator_mu_ and escalator_stop_
  absl::Mutex escalator_mu_;
  bool escalator_stop_ ABSL_GUARDED_BY(escalator_mu_) = false;
  // The edge, stopped first.
  std::unique_ptr<edge::KeyCustody> edge_keys_;
  std::unique_ptr<edge::StaffAccounts> edge_accounts_;
  std::unique_ptr<edge::HubClient> edge_hub_;  // in process, or a remote hub (edge only)
  std::unique_ptr<edge::Desk> edge_desk_;
  std::unique_ptr<edge::ChangeFeed> edge_feed_;
  std::unique_ptr<edge::Signer> edge_signer_;
  std::unique_ptr<edge::PrivacyDesk> edge_privacy_;
  std::unique_ptr<edge::SmartAuth> edge_smart_;
  std::unique_ptr<edge::fhir::FhirApi> edge_fhir_;
  std::unique_ptr<edge::StaffAdmin> edge_staff_;
  std::unique_ptr<trust::Ed25519PrivateKey> edge_seed_key_;  // dev: the hub admin's key
  std::unique_ptr<edge::EdgeHttp> edge_http_;
  std::string console_url_;
  std::unique_ptr<grpc::Server> server_;  // the agencies' listener
  std::string address_;
  std::unique_ptr<grpc::Server> ledger_server_;  // internal: the hub's services and operators
  std::string ledger_address_;
  bool shut_down_ = false;
};

}  // namespace careloop::hub
