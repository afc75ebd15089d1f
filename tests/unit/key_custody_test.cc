// The edge's custody of agency signing keys: encrypted at rest under the
// key-encryption key, private files, never overwritten, and refused (not
// half-read) under another key, damaged, or open to others.
#include "services/edge/key_custody.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "base/file.h"
#include "services/trust/encrypted_key.h"
#include "tests/support/test_env.h"

namespace careloop::edge {
namespace {

using careloop::testing::TempDir;

const std::string kKek = "b3Xq0m5m8c0mJt0lI3hVQmJ9Qm1xYj9tQ3E4bW9uZXk=";  // 44 bytes
const std::string kOtherKek = "Yk1vcmUtcmFuZG9tLWJ5dGVzLWZvci10aGUtb3RoZXI=";

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(KeyCustody, AKeyIsStoredEncryptedPrivatelyAndSignsAfterReload) {
  TempDir tmp;
  auto custody = KeyCustody::Open(tmp.Sub("keys"), kKek);
  ASSERT_TRUE(custody.ok()) << custody.status();
  EXPECT_EQ(ModeOf(tmp.Sub("keys")), 0700u);
  auto created = custody->Create("org.foodbank");
  ASSERT_TRUE(created.ok()) << created.status();

  const std::string path = tmp.Sub("keys/org.foodbank.key.pem");
  EXPECT_EQ(ModeOf(path), 0600u);
  auto pem = ReadFile(path);
  ASSERT_TRUE(pem.ok());
  EXPECT_NE(pem->find("-----BEGIN ENCRYPTED PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  // Without the key-encryption key the file is not a usable key.
  EXPECT_FALSE(trust::Ed25519PrivateKey::FromPem(*pem).ok());

  auto reopened = KeyCustody::Open(tmp.Sub("keys"), kKek);
  ASSERT_TRUE(reopened.ok());
  auto loaded = reopened->Load("org.foodbank");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->public_key().raw(), created->public_key().raw());
  auto sig = loaded->Sign("an envelope's signing input");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(created->public_key().Verify("an envelope's signing input", *sig));
}

TEST(KeyCustody, AnotherKeyEncryptionKeyOrADamagedFileIsRefused) {
  TempDir tmp;
  auto custody = KeyCustody::Open(tmp.Sub("keys"), kKek);
  ASSERT_TRUE(custody.ok());
  ASSERT_TRUE(custody->Create("org.stmarys").ok());
  const std::string path = tmp.Sub("keys/org.stmarys.key.pem");
  const std::string original = *ReadFile(path);

  auto other = KeyCustody::Open(tmp.Sub("keys"), kOtherKek);
  ASSERT_TRUE(other.ok());
  absl::Status s = other->Load("org.stmarys").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_EQ(s.message().find(kOtherKek), std::string::npos);  // never echoes the key
  EXPECT_EQ(*ReadFile(path), original);                       // nothing rewritten

  // Every flipped character of the encrypted key is refused (AES-CBC alone
  // would decrypt many of them to another valid key: the MAC refuses them).
  const size_t body = original.find('\n') + 1;
  const size_t end = original.find("-----END");
  for (size_t pos = body; pos < end; pos += 7) {
    if (original[pos] == '\n') continue;
    std::string damaged = original;
    damaged[pos] = damaged[pos] == 'A' ? 'B' : 'A';
    ASSERT_TRUE(WriteFileAtomically(path, damaged, 0600).ok());
    EXPECT_FALSE(custody->Load("org.stmarys").ok()) << "flipped at " << pos;
  }
  // The MAC line damaged.
  std::string bad_mac = original;
  bad_mac[30] = bad_mac[30] == '0' ? '1' : '0';
  ASSERT_TRUE(WriteFileAtomically(path, bad_mac, 0600).ok());
  EXPECT_EQ(custody->Load("org.stmarys").status().code(), absl::StatusCode::kPermissionDenied);
  // One agency's file put in place of another's is not taken for its key.
  ASSERT_TRUE(custody->Create("org.other").ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.Sub("keys/org.other.key.pem"), original, 0600).ok());
  EXPECT_EQ(custody->Load("org.other").status().code(), absl::StatusCode::kPermissionDenied);
  // Negative control: the original bytes load again.
  ASSERT_TRUE(WriteFileAtomically(path, original, 0600).ok());
  EXPECT_TRUE(custody->Load("org.stmarys").ok());
}

TEST(KeyCustody, KeysAreNeverOverwrittenAndNamesAreAgencyIds) {
  TempDir tmp;
  auto custody = KeyCustody::Open(tmp.Sub("keys"), kKek);
  ASSERT_TRUE(custody.ok());
  auto first = custody->Create("org.b");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(custody->Create("org.b").status().code(), absl::StatusCode::kAlreadyExists);
  auto imported = trust::Ed25519PrivateKey::Generate();
  ASSERT_TRUE(imported.ok());
  EXPECT_EQ(custody->Import("org.b", *imported).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(custody->Load("org.b")->public_key().raw(), first->public_key().raw());
  EXPECT_TRUE(custody->Import("org.a", *imported).ok());
  EXPECT_EQ(custody->Load("org.a")->public_key().raw(), imported->public_key().raw());

  for (const char* bad : {"../escape", "Org.Upper", "", ".hidden", "a/b"}) {
    EXPECT_EQ(custody->Create(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(custody->Load("org.unknown").status().code(), absl::StatusCode::kNotFound);
  auto agencies = custody->Agencies();
  ASSERT_TRUE(agencies.ok());
  EXPECT_EQ(*agencies, (std::vector<std::string>{"org.a", "org.b"}));
  // Nothing but the two keys was left in the directory (no temporary files).
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(tmp.Sub("keys")))
    ++files;
  EXPECT_EQ(files, 2u);
}

TEST(KeyCustody, EncryptingTwiceGivesDifferentFilesOfTheSameKey) {
  auto key = trust::Ed25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string a = trust::EncryptPrivateKey(*key, kKek);
  const std::string b = trust::EncryptPrivateKey(*key, kKek);
  EXPECT_NE(a, b);  // a fresh salt and IV each time
  EXPECT_EQ(trust::DecryptPrivateKey(a, kKek)->public_key().raw(),
            trust::DecryptPrivateKey(b, kKek)->public_key().raw());
  // A plain PEM is not taken for an encrypted one.
  EXPECT_EQ(trust::DecryptPrivateKey(key->ToPem(), kKek).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KeyCustody, WeakSettingsAreRefused) {
  TempDir tmp;
  EXPECT_EQ(KeyCustody::Open(tmp.Sub("keys"), "short passphrase").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto custody = KeyCustody::Open(tmp.Sub("keys"), kKek);
  ASSERT_TRUE(custody.ok());
  ASSERT_TRUE(custody->Create("org.c").ok());
  const std::string file = tmp.Sub("keys/org.c.key.pem");
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  EXPECT_EQ(custody->Load("org.c").status().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  EXPECT_TRUE(custody->Load("org.c").ok());
  ASSERT_EQ(::chmod(tmp.Sub("keys").c_str(), 0755), 0);
  EXPECT_EQ(KeyCustody::Open(tmp.Sub("keys"), kKek).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(KeyCustody, TheKeyEncryptionKeyComesFromTheEnvironment) {
  ::unsetenv(kKekEnvironmentVariable);
  absl::Status missing = KekFromEnvironment().status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find(kKekEnvironmentVariable), std::string::npos);
  ::setenv(kKekEnvironmentVariable, kKek.c_str(), 1);
  EXPECT_EQ(*KekFromEnvironment(), kKek);
  ::unsetenv(kKekEnvironmentVariable);
}

}  // namespace
}  // namespace careloop::edge
