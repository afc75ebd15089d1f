// Referral sections: the content of a referral split by data category, each
// bound to the signed manifest by a salted digest. The hub checks every
// section it receives; a recipient gets the signed manifest and only the
// sections consent lets it see, and checks those itself with nothing but the
// sender's public key. A withheld section is a digest without content.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/crypto.h"
#include "careloop/v1/referral.pb.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace careloop::referral {

inline constexpr char kSectionDomain[] = "careloop.v1.section";
inline constexpr size_t kSaltBytes = 32;

struct SectionLimits {
  size_t max_sections = 32;
  size_t max_section_bytes = 256 << 10;  // small attachments fit
  size_t max_total_bytes = 2 << 20;
  std::set<std::string> media_types = {
      "text/plain",      "application/json", "application/fhir+json",
      "application/pdf", "image/png",        "image/jpeg"};
};

// SHA-256 over the domain string, then salt, section id, category, media type
// and content, each length-prefixed (32 raw bytes).
std::string SectionDigestOf(const v1::Section& section);

// Gives every section a fresh salt from `random` (n bytes each call) and
// returns the digests for the manifest, in order. Checks the limits.
absl::StatusOr<std::vector<v1::SectionDigest>> SealSections(
    std::vector<v1::Section>* sections, const std::function<std::string(size_t)>& random,
    const SectionLimits& limits = {});

// Checks `sections` against the manifest's digests: each names a section of
// the manifest (at most once), with the same category, media type and size,
// a 32-byte salt, and content whose digest matches. With `require_all` every
// digest must have its section (what the hub requires from a sender);
// without, missing ones are withheld (what a recipient may get). Messages
// name the section id, never content.
absl::Status VerifySections(const google::protobuf::RepeatedPtrField<v1::SectionDigest>& manifest,
                            const std::vector<v1::Section>& sections, bool require_all,
                            const SectionLimits& limits = {});

// The default source of salts: OpenSSL's RAND_bytes.
using ::careloop::RandomBytes;

}  // namespace careloop::referral
