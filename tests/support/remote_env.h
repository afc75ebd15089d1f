// A LedgerEnv whose ledger is a real careloopd process (--services=ledger),
// reached through RemoteLedger over gRPC on loopback.
#pragma once

#include <signal.h>

#include "base/status.h"
#include "services/ledger/remote_ledger.h"
#include "tests/support/process.h"
#include "tests/support/test_env.h"

namespace careloop::testing {

class RemoteEnv {
 public:
  absl::Status Start() { return Launch(); }
  storage::Ledger* ledger() { return remote_.get(); }
  absl::Status Restart() {
    remote_.reset();
    child_->Signal(SIGTERM);
    ASSIGN_OR_RETURN(int code, child_->Wait(absl::Seconds(60)));
    if (code != 0)
      return absl::InternalError("careloopd exited with " + std::to_string(code) + ":\n" +
                                 child_->output());
    return Launch();
  }
  const storage::NoteVerifier& verifier() { return *verifier_; }
  const std::string& address() const { return address_; }
  const TempDir& dir() const { return dir_; }

 private:
  absl::Status Launch() {
    ASSIGN_OR_RETURN(child_, StartCareloopd({"--services=ledger", "--data-dir", dir_.path(),
                                             "--hub-name", "careloop.test"},
                                            &hub_address_, &address_));
    remote_ = std::make_unique<ledger::RemoteLedger>(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()), absl::Seconds(30));
    ASSIGN_OR_RETURN(verifier_,
                     trust::Ed25519NoteVerifier::FromFile(dir_.Sub("keys/hub-log.vkey")));
    return absl::OkStatus();
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> child_;
  std::string hub_address_;
  std::string address_;  // the ledger's own listener
  std::unique_ptr<ledger::RemoteLedger> remote_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
};

}  // namespace careloop::testing
