#include "tests/support/test_env.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/status.h"

namespace careloop::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/careloop-test-XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  CARELOOP_CHECK(made != nullptr);
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TestData(const std::string& relative) {
  return std::string(CARELOOP_TESTDATA_DIR) + "/" + relative;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<trust::Ed25519HeadSigner> TestSigner(const std::string& name, char seed_byte) {
  auto key = trust::Ed25519PrivateKey::FromSeed(std::string(32, seed_byte));
  CARELOOP_CHECK(key.ok());
  return std::make_unique<trust::Ed25519HeadSigner>(name, *std::move(key));
}

std::unique_ptr<trust::Ed25519NoteVerifier> VerifierFor(const trust::Ed25519HeadSigner& signer) {
  auto v = trust::Ed25519NoteVerifier::FromVerifierKey(signer.VerifierKey());
  CARELOOP_CHECK(v.ok());
  return *std::move(v);
}

}  // namespace careloop::testing
