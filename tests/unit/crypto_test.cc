// Ed25519 through OpenSSL against RFC 8032 §7.1, Wycheproof and CCTV vectors;
// SHA-256; key files.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "base/sha256.h"
#include "services/trust/ed25519.h"
#include "tests/support/test_env.h"

namespace careloop::trust {
namespace {

using careloop::testing::ReadFileOrDie;
using careloop::testing::TempDir;
using careloop::testing::TestData;
using nlohmann::json;

std::string Unhex(const json& j) { return absl::HexStringToBytes(j.get<std::string>()); }

bool VerifyRaw(const std::string& pk, const std::string& msg, const std::string& sig) {
  auto key = Ed25519PublicKey::FromRaw(pk);
  return key.ok() && key->Verify(msg, sig);
}

TEST(Ed25519, Rfc8032Section71) {
  json v = json::parse(ReadFileOrDie(TestData("ed25519/rfc8032_7_1.json")));
  ASSERT_EQ(v["vectors"].size(), 5u);
  for (const auto& t : v["vectors"]) {
    auto key = Ed25519PrivateKey::FromSeed(Unhex(t["secret_key_hex"]));
    ASSERT_TRUE(key.ok()) << t["name"];
    EXPECT_EQ(key->public_key().raw(), Unhex(t["public_key_hex"])) << t["name"];
    std::string msg = Unhex(t["message_hex"]);
    ASSERT_EQ(msg.size(), t["message_len"].get<size_t>());
    auto sig = key->Sign(msg);
    ASSERT_TRUE(sig.ok());
    EXPECT_EQ(*sig, Unhex(t["signature_hex"])) << t["name"];  // Ed25519 is deterministic
    EXPECT_TRUE(key->public_key().Verify(msg, *sig));
    std::string flipped = *sig;
    flipped[10] ^= 1;
    EXPECT_FALSE(key->public_key().Verify(msg, flipped));
    EXPECT_FALSE(key->public_key().Verify(msg + "x", *sig));
  }
}

TEST(Ed25519, Wycheproof) {
  json v = json::parse(ReadFileOrDie(TestData("ed25519/wycheproof_ed25519_test.json")));
  int count = 0;
  for (const auto& group : v["testGroups"]) {
    std::string pk = Unhex(group["publicKey"]["pk"]);
    for (const auto& t : group["tests"]) {
      bool ok = VerifyRaw(pk, Unhex(t["msg"]), Unhex(t["sig"]));
      EXPECT_EQ(ok, t["result"].get<std::string>() == "valid")
          << "tcId " << t["tcId"] << " " << t["comment"];
      ++count;
    }
  }
  EXPECT_EQ(count, 151);
}

// OpenSSL's verifier follows the "ref10" behaviour: it rejects vectors flagged
// non_canonical_R or low_order_residue and accepts every other one.
TEST(Ed25519, CctvEdgeCases) {
  json v = json::parse(ReadFileOrDie(TestData("ed25519/cctv_ed25519vectors.json")));
  ASSERT_EQ(v.size(), 914u);
  int accepted = 0;
  for (const auto& t : v) {
    bool reject = false;
    if (t["flags"].is_array()) {
      for (const auto& f : t["flags"]) {
        if (f == "non_canonical_R" || f == "low_order_residue") reject = true;
      }
    }
    bool ok = VerifyRaw(Unhex(t["key"]), t["msg"].get<std::string>(), Unhex(t["sig"]));
    EXPECT_EQ(ok, !reject) << "vector " << t["number"];
    accepted += ok ? 1 : 0;
  }
  EXPECT_EQ(accepted, 208);
}

TEST(Ed25519, PemRoundTripAndKeyFiles) {
  auto key = Ed25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto again = Ed25519PrivateKey::FromPem(key->ToPem());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key().raw(), key->public_key().raw());
  auto pub = Ed25519PublicKey::FromPem(key->public_key().ToPem());
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->raw(), key->public_key().raw());

  TempDir dir;
  std::string path = dir.Sub("k.pem");
  ASSERT_TRUE(WritePrivateKeyFile(path, *key).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(WritePrivateKeyFile(path, *key).ok()) << "must not overwrite a key";
  auto loaded = LoadPrivateKeyFile(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->public_key().raw(), key->public_key().raw());
  chmod(path.c_str(), 0644);
  auto loose = LoadPrivateKeyFile(path);
  EXPECT_EQ(loose.status().code(), absl::StatusCode::kPermissionDenied);

  bool generated = false;
  auto fresh = LoadOrGeneratePrivateKeyFile(dir.Sub("new.pem"), &generated);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(generated);
  auto existing = LoadOrGeneratePrivateKeyFile(dir.Sub("new.pem"), &generated);
  ASSERT_TRUE(existing.ok());
  EXPECT_FALSE(generated);
  EXPECT_EQ(existing->public_key().raw(), fresh->public_key().raw());

  std::ofstream(dir.Sub("junk.pem")) << "not a key";
  chmod(dir.Sub("junk.pem").c_str(), 0600);
  EXPECT_EQ(LoadPrivateKeyFile(dir.Sub("junk.pem")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Ed25519, RejectsWrongSizes) {
  EXPECT_FALSE(Ed25519PublicKey::FromRaw(std::string(31, 'a')).ok());
  EXPECT_FALSE(Ed25519PrivateKey::FromSeed(std::string(33, 'a')).ok());
  auto key = Ed25519PrivateKey::FromSeed(std::string(32, 'a'));
  ASSERT_TRUE(key.ok());
  EXPECT_FALSE(key->public_key().Verify("m", std::string(63, 'x')));
}

TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(HexEncode(AsStringView(Sha256(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(AsStringView(Sha256("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Parts({"a", "bc"}), Sha256("abc"));
}

}  // namespace
}  // namespace careloop::trust
