// Shared test helpers: temporary directories, the shared test vectors, a
// deterministic test log key, and the conformance-suite environment.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "services/trust/head_signer.h"
#include "storage/ledger.h"

namespace careloop::testing {

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
