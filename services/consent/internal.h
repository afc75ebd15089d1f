// Helpers shared by the consent core's files (consent_core.cc, subjects.cc,
// consents.cc, break_glass.cc, accounting.cc). Private to services/consent:
// tools/lint/structure.py refuses an include of it from anywhere else.
#pragma once

#include <openssl/rand.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "base/sha256.h"
#include "base/status.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/envelope.pb.h"
#include "careloop/v1/ledger.pb.h"
#include "services/names/names.h"
#include "services/trust/append.h"

namespace careloop::consent {

using trust::AddEvent;
using trust::Corrupt;
using trust::Expect;

inline constexpr absl::Duration kProjectionWait = absl::Seconds(10);
inline constexpr int kMaxMergeHops = 64;
inline constexpr size_t kMaxMembers = 1024;
inline constexpr size_t kMaxCachedFolds = 20000;  // subjects whose consent fold is kept
inline constexpr int kMaxRuleDepth = 8;
inline constexpr int kMaxRules = 256;
inline constexpr int kMaxIdentifiers = 8;
inline constexpr int kMaxCategories = 32;
using names::stream::kBreakGlassList;
inline constexpr char kComplianceRole[] = "compliance";
inline constexpr char kEmergencyRole[] = "emergency";

inline std::string DefaultSubjectId() {
  unsigned char b[8];
  CARELOOP_CHECK(RAND_bytes(b, sizeof b) == 1);
  return "s-" + HexEncode(absl::string_view(reinterpret_cast<char*>(b), sizeof b));
}

inline absl::Status ValidateIdentifier(const v1::Identifier& id) {
  if (id.authority().empty() || id.authority().size() > 128) {
    return absl::InvalidArgumentError("an identifier's authority must be 1 to 128 bytes");
  }
  for (char c : id.authority()) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '/' || c == '@' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "an identifier's authority may hold only [A-Za-z0-9._:/@-]");
    }
  }
  // The value is personal data: the message never repeats it.
  if (id.value().empty() || id.value().size() > 256) {
    return absl::InvalidArgumentError("an identifier's value must be 1 to 256 bytes");
  }
  for (char c : id.value()) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("an identifier's value may not hold control characters");
    }
  }
  return absl::OkStatus();
}

inline uint64_t VersionOf(const std::vector<v1::Event>& events) {
  return events.empty() ? 0 : events.back().header().stream_version();
}

inline absl::StatusOr<v1::Envelope> EnvelopeOf(const v1::Event& e) {
  v1::Envelope env;
  if (!env.ParseFromString(e.payload())) return Corrupt(e, "holds no envelope");
  return env;
}

template <typename T>
inline absl::StatusOr<T> SignedPayload(const v1::Event& e, v1::Envelope* env_out = nullptr) {
  ASSIGN_OR_RETURN(v1::Envelope env, EnvelopeOf(e));
  T p;
  if (!p.ParseFromString(env.payload())) return Corrupt(e, "holds a payload that does not parse");
  if (env_out != nullptr) *env_out = std::move(env);
  return p;
}

template <typename T>
inline absl::StatusOr<T> HubPayload(const v1::Event& e) {
  T p;
  if (!p.ParseFromString(e.payload())) return Corrupt(e, "holds a payload that does not parse");
  return p;
}

// The last six calendar years before `to` (the §164.528 period).
inline absl::Time SixYearsBefore(absl::Time to) {
  absl::CivilSecond c = absl::ToCivilSecond(to, absl::UTCTimeZone());
  absl::CivilSecond back(c.year() - 6, c.month(), c.day(), c.hour(), c.minute(), c.second());
  return absl::FromCivil(back, absl::UTCTimeZone()) +
         (to - absl::FromCivil(c, absl::UTCTimeZone()));
}

}  // namespace careloop::consent
