// Signed envelopes: signing, strict parsing and verification.
//
// The hub verifies an envelope in a fixed order, each failure with its own
// status and message, and writes nothing for a rejected one:
//   0. the bytes parse (no unknown fields, within limits)       INVALID_ARGUMENT
//   1. idempotency: (sender, message id) seen before — same bytes: a duplicate
//      (answer with the original receipt); other bytes            ALREADY_EXISTS
//   2. unknown agency                                             UNAUTHENTICATED
//      suspended agency                                           PERMISSION_DENIED
//   3. unknown actor, or a role not allowed for the payload type  PERMISSION_DENIED
//   4. unknown key id                                             UNAUTHENTICATED
//   5. key not valid at the hub's receive time                    UNAUTHENTICATED
//   6. bad signature                                              UNAUTHENTICATED
//   7. created time outside the allowed skew                      FAILED_PRECONDITION
//   8. payload type not allowed on this RPC                       INVALID_ARGUMENT
//   9. payload does not parse (or has unknown fields)             INVALID_ARGUMENT
// Idempotency comes first so that a retry after an outage longer than the
// skew still gets its original answer.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "careloop/v1/envelope.pb.h"
#include "google/protobuf/message.h"
#include "services/trust/ed25519.h"

namespace careloop::trust {

inline constexpr absl::string_view kEnvelopeDomain = "careloop.v1.envelope";

struct EnvelopeLimits {
  size_t max_envelope_bytes = 4 << 20;
  size_t max_id_bytes = 128;  // agency, user, key and message ids, role
  size_t max_display_name_bytes = 256;
  size_t max_payload_type_bytes = 128;
};

// Appends `value` to `out` with its 4-byte big-endian length: the framing of
// every signing input and digest input, so that fields cannot run together.
void AppendLengthPrefixed(std::string* out, absl::string_view value);

// The exact bytes a sender signs: the domain string, then every field except
// the signature, each prefixed with its 4-byte big-endian length.
std::string SigningInput(const v1::Envelope& envelope);

// An unsigned envelope carrying `payload` (its type is the message's full name).
v1::Envelope NewEnvelope(const google::protobuf::Message& payload, absl::string_view sender,
                         v1::Actor actor, absl::string_view key_id, absl::Time created,
                         absl::string_view message_id);

// Signs `envelope` (its signature field is replaced) and returns its bytes.
absl::StatusOr<std::string> SignEnvelope(v1::Envelope envelope, const Ed25519PrivateKey& key);

// Parses envelope bytes strictly: well-formed protobuf, no unknown fields
// (also inside the actor), every required field present, within limits.
absl::StatusOr<v1::Envelope> ParseEnvelope(absl::string_view bytes, const EnvelopeLimits& limits);

// "careloop.v1.GrantConsent" -> "GrantConsent": the ledger event type of a
// payload type.
std::string ShortTypeName(absl::string_view full_name);

// True if `message` or any message inside it carries fields this binary does
// not know.
bool HasUnknownFields(const google::protobuf::Message& message);

// What the verifier needs to know about one agency, from the directory.
struct KeyView {
  std::string public_key;  // raw 32 bytes
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfiniteFuture();
  std::optional<absl::Time> revoked_at;
};
struct AgencyView {
  bool active = true;
  std::map<std::string, std::set<std::string>> actor_roles;  // user id -> roles
  std::set<std::string> inactive_actors;                     // user ids
  std::map<std::string, KeyView> keys;                       // key id -> key
};

class EnvelopeDirectory {
 public:
  virtual ~EnvelopeDirectory() = default;
  // nullopt: no such agency.
  virtual absl::StatusOr<std::optional<AgencyView>> FindAgency(absl::string_view agency_id) = 0;
};

// The envelopes the hub has accepted, by (sender, message id).
struct SeenMessage {
  std::string envelope_bytes;
  uint64_t seq = 0;
};
class MessageLog {
 public:
  virtual ~MessageLog() = default;
  virtual absl::StatusOr<std::optional<SeenMessage>> Find(absl::string_view sender,
                                                          absl::string_view message_id) = 0;
};

// What one RPC accepts: payload types, and for each the roles that may send it.
struct RpcPolicy {
  std::map<std::string, std::set<std::string>> roles_by_payload_type;
  // After verification, for a new envelope: may its sender send it at all
  // (policy::Table::Envelopes sets it from the table's parties).
  std::function<absl::Status(const v1::Envelope&)> admit;
  absl::Duration max_skew = absl::Minutes(5);
  EnvelopeLimits limits;
};

struct VerifiedEnvelope {
  v1::Envelope envelope;
  // The payload, parsed into the message type it names.
  std::unique_ptr<google::protobuf::Message> payload;
  // Set when the same bytes were accepted before: answer with the receipt of
  // `original_seq` and write nothing.
  bool duplicate = false;
  uint64_t original_seq = 0;
};

// Verifies `bytes` as received at `received` (the hub's clock), in the order
// above. Writes nothing; the caller appends a verified, non-duplicate envelope.
absl::StatusOr<VerifiedEnvelope> VerifyEnvelope(absl::string_view bytes, const RpcPolicy& policy,
                                                EnvelopeDirectory& directory, MessageLog& seen,
                                                absl::Time received);
// The same for an envelope the caller has already parsed from `bytes` with
// ParseEnvelope (the checks after parsing, without parsing twice).
absl::StatusOr<VerifiedEnvelope> VerifyParsedEnvelope(v1::Envelope e, absl::string_view bytes,
                                                      const RpcPolicy& policy,
                                                      EnvelopeDirectory& directory,
                                                      MessageLog& seen, absl::Time received);

}  // namespace careloop::trust
