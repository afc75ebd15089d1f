// The edge's credential primitives against their standards' vectors: scrypt
// (RFC 7914 section 12), HOTP (RFC 4226 appendix D), TOTP (RFC 6238
// appendix B), base32 (RFC 4648 section 10); and the sealing of TOTP
// secrets under the key-encryption key.
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "base/sha256.h"
#include "services/edge/password.h"
#include "services/edge/sealed.h"
#include "services/edge/totp.h"

namespace careloop::edge {
namespace {

TEST(Scrypt, MatchesRfc7914Vectors) {
  EXPECT_EQ(HexEncode(Scrypt("", "", {4, 1, 1}, 64)),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
            "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
  EXPECT_EQ(HexEncode(Scrypt("password", "NaCl", {10, 8, 16}, 64)),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
            "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
}

TEST(PasswordHash, VerifiesTheRightPasswordOnlyAndSaltsEachHash) {
  const std::string h = HashPassword("correct horse battery", kTestPasswordCost);
  EXPECT_EQ(h.rfind("scrypt$10$8$1$", 0), 0u) << h;
  EXPECT_TRUE(*VerifyPassword("correct horse battery", h));
  EXPECT_FALSE(*VerifyPassword("correct horse batterz", h));
  EXPECT_FALSE(*VerifyPassword("", h));
  EXPECT_NE(HashPassword("correct horse battery", kTestPasswordCost), h);
  EXPECT_FALSE(NeedsRehash(h, kTestPasswordCost));
  EXPECT_TRUE(NeedsRehash(h, PasswordCost{}));
}

TEST(PasswordHash, ADamagedOrHostileStoredHashIsRefusedNotRun) {
  for (const std::string bad : {"", "scrypt$10$8$1$c2FsdA==", "bcrypt$10$8$1$c2FsdA==$aGFzaA==",
                                // A cost of 2^30 (128 GiB) must not be tried.
                                "scrypt$30$8$1$c2FsdHNhbHRzYWx0c2FsdA==$"
                                "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
                                "scrypt$10$8$1$$MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
                                "scrypt$10$8$1$c2FsdA==$c2hvcnQ="}) {
    EXPECT_EQ(VerifyPassword("whatever password", bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(PasswordPolicy, ShortLongAndUserIdPasswordsAreRefused) {
  EXPECT_FALSE(CheckNewPassword("short", "ana").ok());
  EXPECT_FALSE(CheckNewPassword(std::string(129, 'x'), "ana").ok());
  EXPECT_FALSE(CheckNewPassword("ana.intake.01", "ana.intake.01").ok());
  EXPECT_TRUE(CheckNewPassword("a long enough passphrase", "ana").ok());
}

TEST(Hotp, MatchesRfc4226AppendixD) {
  const std::string secret = "12345678901234567890";
  const char* want[] = {"755224", "287082", "359152", "969429", "338314",
                        "254676", "287922", "162583", "399871", "520489"};
  for (uint64_t c = 0; c < 10; ++c) EXPECT_EQ(Hotp(secret, c, 6), want[c]) << c;
}

TEST(Totp, MatchesRfc6238AppendixBForSha1) {
  const std::string secret = "12345678901234567890";
  const std::pair<int64_t, const char*> vectors[] = {
      {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
      {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}};
  for (const auto& [t, code] : vectors) {
    EXPECT_EQ(Hotp(secret, TotpStep(absl::FromUnixSeconds(t)), 8), code) << t;
  }
}

TEST(Totp, AcceptsOneStepOfDriftAndNeverTheSameStepTwice) {
  const std::string secret = "12345678901234567890";
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  const int64_t step = TotpStep(now);
  const std::string current = Hotp(secret, step, 6);
  auto used = VerifyTotp(secret, current, now, 0);
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(*used, step);
  // Replayed within its window: refused.
  EXPECT_FALSE(VerifyTotp(secret, current, now + absl::Seconds(10), *used).ok());
  // The previous and next steps are accepted; two steps away is not.
  EXPECT_TRUE(VerifyTotp(secret, Hotp(secret, step - 1, 6), now, 0).ok());
  EXPECT_TRUE(VerifyTotp(secret, Hotp(secret, step + 1, 6), now, 0).ok());
  EXPECT_FALSE(VerifyTotp(secret, Hotp(secret, step + 2, 6), now, 0).ok());
  EXPECT_FALSE(VerifyTotp(secret, Hotp(secret, step - 2, 6), now, 0).ok());
  // An older step is refused once a newer one was used.
  EXPECT_FALSE(VerifyTotp(secret, Hotp(secret, step - 1, 6), now, step).ok());
  for (const std::string bad : {"", "12345", "1234567", "abcdef"}) {
    EXPECT_EQ(VerifyTotp(secret, bad, now, 0).status().code(), absl::StatusCode::kUnauthenticated);
  }
}

TEST(Base32, MatchesRfc4648Section10) {
  EXPECT_EQ(Base32Encode(""), "");
  EXPECT_EQ(Base32Encode("f"), "MY");
  EXPECT_EQ(Base32Encode("fo"), "MZXQ");
  EXPECT_EQ(Base32Encode("foo"), "MZXW6");
  EXPECT_EQ(Base32Encode("foob"), "MZXW6YQ");
  EXPECT_EQ(Base32Encode("fooba"), "MZXW6YTB");
  EXPECT_EQ(Base32Encode("foobar"), "MZXW6YTBOI");
  EXPECT_EQ(TotpUri("foobar", "ana@org.foodbank"),
            "otpauth://totp/careloop:ana%40org.foodbank?secret=MZXW6YTBOI&issuer=careloop"
            "&algorithm=SHA1&digits=6&period=30");
}

TEST(Sealer, OpensOnlyWhatItSealedForTheSameRecordUnaltered) {
  const Sealer sealer(std::string(32, 'k'), "staff totp");
  const std::string sealed = sealer.Seal("a totp seed", "totp\norg.a\nana");
  EXPECT_EQ(sealed.find("a totp seed"), std::string::npos);
  auto opened = sealer.Open(sealed, "totp\norg.a\nana");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "a totp seed");
  // Another record, another key, another purpose, any flipped byte, a cut.
  EXPECT_FALSE(sealer.Open(sealed, "totp\norg.a\nbob").ok());
  EXPECT_FALSE(Sealer(std::string(32, 'j'), "staff totp").Open(sealed, "totp\norg.a\nana").ok());
  EXPECT_FALSE(Sealer(std::string(32, 'k'), "other").Open(sealed, "totp\norg.a\nana").ok());
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string flipped = sealed;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_EQ(sealer.Open(flipped, "totp\norg.a\nana").status().code(),
              absl::StatusCode::kPermissionDenied)
        << "byte " << i;
  }
  EXPECT_FALSE(sealer.Open(sealed.substr(0, 20), "totp\norg.a\nana").ok());
}

}  // namespace
}  // namespace careloop::edge
