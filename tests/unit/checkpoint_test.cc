// C2SP signed-note checkpoints: format, signature, key ids and vkeys, and
// refusal of every kind of tampering.
#include "storage/checkpoint.h"

#include <gtest/gtest.h>

#include "storage/merkle.h"
#include "tests/support/test_env.h"

namespace careloop::storage {
namespace {

using careloop::testing::TestSigner;
using careloop::testing::VerifierFor;

Checkpoint Sample() {
  return Checkpoint{OriginFor("careloop.test", "0123abcd"), 42, merkle::HashLeaf("x"),
                    1'800'000'000'123'456'789};
}

TEST(Checkpoint, SignAndOpen) {
  auto signer = TestSigner();
  auto verifier = VerifierFor(*signer);
  auto note = SignCheckpoint(Sample(), *signer);
  ASSERT_TRUE(note.ok());
  // Layout: body, blank line, one em-dash signature line.
  EXPECT_EQ(note->rfind("careloop.test/0123abcd\n42\n", 0), 0u);
  EXPECT_NE(note->find("\ntime 1800000000123456789\n\n\xe2\x80\x94 careloop.test "),
            std::string::npos);
  auto cp = OpenCheckpoint(*note, *verifier);
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->origin, "careloop.test/0123abcd");
  EXPECT_EQ(cp->tree_size, 42u);
  EXPECT_EQ(cp->root, merkle::HashLeaf("x"));
  EXPECT_EQ(cp->time_unix_nanos, 1'800'000'000'123'456'789);
  EXPECT_EQ(LogIdOfOrigin(cp->origin), "0123abcd");
}

TEST(Checkpoint, AnyChangedByteFails) {
  auto signer = TestSigner();
  auto verifier = VerifierFor(*signer);
  std::string note = *SignCheckpoint(Sample(), *signer);
  for (size_t i = 0; i < note.size(); ++i) {
    std::string bad = note;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(OpenCheckpoint(bad, *verifier).ok()) << "byte " << i;
  }
}

TEST(Checkpoint, AnotherKeyOrNameFails) {
  auto signer = TestSigner("careloop.test", 7);
  auto other = TestSigner("careloop.test", 8);
  auto renamed = TestSigner("careloop.other", 7);
  std::string note = *SignCheckpoint(Sample(), *signer);
  EXPECT_FALSE(OpenCheckpoint(note, *VerifierFor(*other)).ok());
  EXPECT_FALSE(OpenCheckpoint(note, *VerifierFor(*renamed)).ok());
  // A cosignature by another key is ignored, not an error.
  std::string cosigned = *SignCheckpoint(Sample(), *other);
  std::string both = note + cosigned.substr(cosigned.find("\n\n") + 2);
  EXPECT_TRUE(OpenCheckpoint(both, *VerifierFor(*signer)).ok());
  EXPECT_TRUE(OpenCheckpoint(both, *VerifierFor(*other)).ok());
}

TEST(Checkpoint, VerifierKeyRoundTrip) {
  auto signer = TestSigner();
  std::string vkey = signer->VerifierKey();
  auto parsed = ParseVerifierKey(vkey);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->key_name, "careloop.test");
  EXPECT_EQ(parsed->public_key, signer->public_key());
  EXPECT_EQ(parsed->key_id, Ed25519KeyId("careloop.test", signer->public_key()));
  EXPECT_FALSE(ParseVerifierKey("careloop.test+00000000+" + vkey.substr(vkey.rfind('+') + 1)).ok());
  EXPECT_FALSE(ParseVerifierKey("no-plus-signs").ok());
  EXPECT_FALSE(ParseVerifierKey("a+b+c").ok());
}

TEST(Checkpoint, MalformedBodies) {
  EXPECT_FALSE(ParseCheckpointBody("").ok());
  EXPECT_FALSE(ParseCheckpointBody("origin\n12\n").ok());
  EXPECT_FALSE(ParseCheckpointBody("origin\n012\nAAAA\n").ok());
  EXPECT_FALSE(ParseCheckpointBody("origin\nx\nAAAA\n").ok());
  EXPECT_FALSE(ParseCheckpointBody("origin\n1\nnot-base64\n").ok());
  EXPECT_FALSE(ParseCheckpointBody("origin\n1\n" + std::string(44, 'A') + "\n\n").ok());
}

}  // namespace
}  // namespace careloop::storage
