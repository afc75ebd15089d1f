#include "services/trust/envelope.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/unknown_field_set.h"

namespace careloop::trust {
namespace {

std::string BigEndian64(int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return s;
}

absl::Status CheckId(absl::string_view value, absl::string_view what, size_t max) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat("envelope: ", what, " is empty"));
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("envelope: ", what, " is longer than ", max, " bytes"));
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("envelope: ", what, " has a control or space character"));
    }
  }
  return absl::OkStatus();
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

}  // namespace

void AppendLengthPrefixed(std::string* out, absl::string_view value) {
  const uint32_t n = static_cast<uint32_t>(value.size());
  const char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  out->append(len, 4);
  out->append(value.data(), value.size());
}

std::string SigningInput(const v1::Envelope& e) {
  std::string out;
  out.reserve(kEnvelopeDomain.size() + 64 + e.payload().size() + e.payload_type().size());
  AppendLengthPrefixed(&out, kEnvelopeDomain);
  AppendLengthPrefixed(&out, e.payload_type());
  AppendLengthPrefixed(&out, e.sender_agency());
  AppendLengthPrefixed(&out, e.actor().user_id());
  AppendLengthPrefixed(&out, e.actor().display_name());
  AppendLengthPrefixed(&out, e.actor().role());
  AppendLengthPrefixed(&out, e.key_id());
  AppendLengthPrefixed(&out, BigEndian64(e.created_unix_nanos()));
  AppendLengthPrefixed(&out, e.message_id());
  AppendLengthPrefixed(&out, e.payload());
  return out;
}

absl::StatusOr<std::string> SignEnvelope(v1::Envelope envelope, const Ed25519PrivateKey& key) {
  envelope.clear_signature();
  ASSIGN_OR_RETURN(std::string sig, key.Sign(SigningInput(envelope)));
  envelope.set_signature(std::move(sig));
  return envelope.SerializeAsString();
}

bool HasUnknownFields(const google::protobuf::Message& message) {
  const google::protobuf::Reflection* r = message.GetReflection();
  if (!r->GetUnknownFields(message).empty()) return true;
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        if (HasUnknownFields(r->GetRepeatedMessage(message, f, i))) return true;
      }
    } else if (HasUnknownFields(r->GetMessage(message, f))) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<v1::Envelope> ParseEnvelope(absl::string_view bytes, const EnvelopeLimits& limits) {
  if (bytes.size() > limits.max_envelope_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "envelope: ", bytes.size(), " bytes; the limit is ", limits.max_envelope_bytes));
  }
  v1::Envelope e;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  in.SetRecursionLimit(8);
  if (!e.MergePartialFromCodedStream(&in) || !in.ConsumedEntireMessage() ||
      in.BytesUntilLimit() > 0) {
    return absl::InvalidArgumentError("envelope: the bytes are not a well-formed Envelope");
  }
  if (HasUnknownFields(e)) {
    return absl::InvalidArgumentError("envelope: it carries fields this hub does not know");
  }
  RETURN_IF_ERROR(CheckId(e.sender_agency(), "sender_agency", limits.max_id_bytes));
  RETURN_IF_ERROR(CheckId(e.message_id(), "message_id", limits.max_id_bytes));
  RETURN_IF_ERROR(CheckId(e.key_id(), "key_id", limits.max_id_bytes));
  RETURN_IF_ERROR(CheckId(e.payload_type(), "payload_type", limits.max_payload_type_bytes));
  if (!e.has_actor()) return absl::InvalidArgumentError("envelope: the actor is missing");
  RETURN_IF_ERROR(CheckId(e.actor().user_id(), "actor.user_id", limits.max_id_bytes));
  RETURN_IF_ERROR(CheckId(e.actor().role(), "actor.role", limits.max_id_bytes));
  if (e.actor().display_name().size() > limits.max_display_name_bytes) {
    return absl::InvalidArgumentError("envelope: actor.display_name is too long");
  }
  if (e.signature().size() != kEd25519SignatureSize) {
    return absl::InvalidArgumentError("envelope: the signature is not 64 bytes");
  }
  return e;
}

absl::StatusOr<VerifiedEnvelope> VerifyEnvelope(absl::string_view bytes, const RpcPolicy& policy,
                                                EnvelopeDirectory& directory, MessageLog& seen,
                                                absl::Time received) {
  ASSIGN_OR_RETURN(v1::Envelope e, ParseEnvelope(bytes, policy.limits));
  return VerifyParsedEnvelope(std::move(e), bytes, policy, directory, seen, received);
}

absl::StatusOr<VerifiedEnvelope> VerifyParsedEnvelope(v1::Envelope e, absl::string_view bytes,
                                                      const RpcPolicy& policy,
                                                      EnvelopeDirectory& directory,
                                                      MessageLog& seen, absl::Time received) {
  VerifiedEnvelope out;
  const std::string& sender = e.sender_agency();

  // 1. Idempotency first: a retry gets its original answer whatever changed since.
  ASSIGN_OR_RETURN(std::optional<SeenMessage> prior, seen.Find(sender, e.message_id()));
  if (prior.has_value()) {
    if (prior->envelope_bytes != bytes) {
      return absl::AlreadyExistsError(
          absl::StrCat("message id ", e.message_id(), " from agency ", sender,
                       " was already used for a different envelope (seq ", prior->seq, ")"));
    }
    out.envelope = std::move(e);
    out.duplicate = true;
    out.original_seq = prior->seq;
    return out;
  }

  // 2. The agency.
  ASSIGN_OR_RETURN(std::optional<AgencyView> agency, directory.FindAgency(sender));
  if (!agency.has_value())
    return absl::UnauthenticatedError(absl::StrCat("unknown agency ", sender));
  if (!agency->active)
    return absl::PermissionDeniedError(absl::StrCat("agency ", sender, " is suspended"));

  // 3. The actor, and the role for this payload type.
  const v1::Actor& actor = e.actor();
  if (agency->inactive_actors.contains(actor.user_id())) {
    return absl::PermissionDeniedError(
        absl::StrCat("actor ", actor.user_id(), " of agency ", sender, " is deactivated"));
  }
  auto roles = agency->actor_roles.find(actor.user_id());
  if (roles == agency->actor_roles.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("unknown actor ", actor.user_id(), " at agency ", sender));
  }
  if (!roles->second.contains(actor.role())) {
    return absl::PermissionDeniedError(absl::StrCat("actor ", actor.user_id(), " of agency ",
                                                    sender, " does not hold the role ",
                                                    actor.role()));
  }
  auto allowed = policy.roles_by_payload_type.find(e.payload_type());
  if (allowed != policy.roles_by_payload_type.end() && !allowed->second.contains(actor.role())) {
    return absl::PermissionDeniedError(
        absl::StrCat("the role ", actor.role(), " may not send ", e.payload_type()));
  }

  // 4-5. The key, valid at the hub's receive time.
  auto key = agency->keys.find(e.key_id());
  if (key == agency->keys.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("unknown key ", e.key_id(), " of agency ", sender));
  }
  const KeyView& k = key->second;
  if (k.revoked_at.has_value() && received >= *k.revoked_at) {
    return absl::UnauthenticatedError(absl::StrCat("key ", e.key_id(), " of agency ", sender,
                                                   " was revoked at ", Rfc3339(*k.revoked_at)));
  }
  if (received < k.not_before || received >= k.not_after) {
    return absl::UnauthenticatedError(absl::StrCat("key ", e.key_id(), " of agency ", sender,
                                                   " is not valid at ", Rfc3339(received)));
  }

  // 6. The signature, over the fields exactly as received.
  absl::StatusOr<Ed25519PublicKey> pub = Ed25519PublicKey::FromRawCached(k.public_key);
  if (!pub.ok() || !pub->Verify(SigningInput(e), e.signature())) {
    return absl::UnauthenticatedError(absl::StrCat("bad signature on message ", e.message_id(),
                                                   " from agency ", sender, " (key ", e.key_id(),
                                                   ")"));
  }

  // 7. The sender's clock.
  absl::Time created = absl::FromUnixNanos(e.created_unix_nanos());
  if (absl::AbsDuration(created - received) > policy.max_skew) {
    return absl::FailedPreconditionError(absl::StrCat(
        "created time ", Rfc3339(created), " is more than ", absl::FormatDuration(policy.max_skew),
        " from the hub's clock (", Rfc3339(received), "); check the sender's clock"));
  }

  // 8. What this RPC accepts.
  if (allowed == policy.roles_by_payload_type.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload type ", e.payload_type(), " is not accepted here"));
  }

  // 9. The payload parses as the type it names, with no unknown fields.
  const google::protobuf::Descriptor* d =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(e.payload_type());
  if (d == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload type ", e.payload_type(), " is unknown"));
  }
  std::unique_ptr<google::protobuf::Message> payload(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(d)->New());
  if (!payload->ParseFromString(e.payload()) || HasUnknownFields(*payload)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the payload does not parse as ", e.payload_type()));
  }
  out.envelope = std::move(e);
  out.payload = std::move(payload);
  return out;
}

std::string ShortTypeName(absl::string_view full_name) {
  size_t dot = full_name.rfind('.');
  return std::string(dot == absl::string_view::npos ? full_name : full_name.substr(dot + 1));
}

v1::Envelope NewEnvelope(const google::protobuf::Message& payload, absl::string_view sender,
                         v1::Actor actor, absl::string_view key_id, absl::Time created,
                         absl::string_view message_id) {
  v1::Envelope e;
  e.set_payload(payload.SerializeAsString());
  e.set_payload_type(payload.GetDescriptor()->full_name());
  e.set_sender_agency(std::string(sender));
  *e.mutable_actor() = std::move(actor);
  e.set_key_id(std::string(key_id));
  e.set_created_unix_nanos(absl::ToUnixNanos(created));
  e.set_message_id(std::string(message_id));
  return e;
}

}  // namespace careloop::trust
