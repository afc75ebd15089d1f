// Shared test helpers: temporary directories, the shared test vectors, a
// deterministic test log key, and the conformance-suite environment.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "careloop/v1/directory.pb.h"
#include "services/policy/policy.h"
#include "services/trust/head_signer.h"
#include "storage/ledger.h"

namespace careloop::testing {

// Requests of the directory's reads, by id.
inline v1::GetAgencyRequest AgencyRequest(const std::string& agency_id) {
  v1::GetAgencyRequest r;
  r.set_agency_id(agency_id);
  return r;
}
inline v1::GetEnvelopeReceiptRequest ReceiptRequest(const std::string& sender,
                                                    const std::string& message_id) {
  v1::GetEnvelopeReceiptRequest r;
  r.set_sender_agency(sender);
  r.set_message_id(message_id);
  return r;
}

// The caller a test names by id, as a connection would prove it: "" is
// nobody, "hub" the hub's own services, "admin:<user>" a hub admin, any
// other id an agency. The cores admit it by their tables (policy::Gate).
inline policy::Caller Who(std::string_view id) {
  if (id.empty()) return policy::Caller::None();
  if (id == "hub") return policy::Caller::HubService();
  if (id.substr(0, 6) == "admin:") return policy::Caller::HubAdmin(std::string(id.substr(6)));
  return policy::Caller::Agency(std::string(id));
}

// A fresh directory removed (recursively) when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Path of a file under the shared test vectors (CMake CARELOOP_TESTDATA_DIR).
std::string TestData(const std::string& relative);
std::string ReadFileOrDie(const std::string& path);

// A log signer from a fixed seed, so tests are repeatable.
std::unique_ptr<trust::Ed25519HeadSigner> TestSigner(const std::string& name = "careloop.test",
                                                     char seed_byte = 7);
std::unique_ptr<trust::Ed25519NoteVerifier> VerifierFor(const trust::Ed25519HeadSigner& signer);

// A ledger under test, in-process or behind a real careloopd process.
class LedgerEnv {
 public:
  virtual ~LedgerEnv() = default;
  virtual storage::Ledger* ledger() = 0;
  // Stops the ledger cleanly and opens it again on the same data.
  virtual absl::Status Restart() = 0;
  virtual const storage::NoteVerifier& verifier() = 0;
};

}  // namespace careloop::testing
