#include "services/directory/directory.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::directory {
namespace {

using names::stream::kAgencyPrefix;
using names::stream::kCapacityPrefix;
constexpr absl::Duration kProjectionWait = absl::Seconds(10);

const std::set<std::string>& KnownRoles() {
  static const std::set<std::string> roles = {"sender", "receiver", "compliance", "emergency",
                                              "admin"};
  return roles;
}

absl::Time FromNanos(int64_t n, absl::Time if_zero) {
  return n == 0 ? if_zero : absl::FromUnixNanos(n);
}

trust::KeyView ToKeyView(const v1::AgencyKey& k) {
  trust::KeyView v;
  v.public_key = k.public_key();
  v.not_before = FromNanos(k.not_before_unix_nanos(), absl::InfinitePast());
  v.not_after = FromNanos(k.not_after_unix_nanos(), absl::InfiniteFuture());
  if (k.revoked_unix_nanos() != 0) v.revoked_at = absl::FromUnixNanos(k.revoked_unix_nanos());
  return v;
}

absl::Status ValidateKey(const v1::AgencyKey& k) {
  RETURN_IF_ERROR(storage::ValidateStreamSegment(k.key_id(), "key id"));
  if (k.public_key().size() != trust::kEd25519PublicKeySize) {
    return absl::InvalidArgumentError("a key's public_key must be 32 raw Ed25519 bytes");
  }
  if (!trust::Ed25519PublicKey::FromRaw(k.public_key()).ok()) {
    return absl::InvalidArgumentError("a key's public_key is not a valid Ed25519 key");
  }
  if (k.revoked_unix_nanos() != 0)
    return absl::InvalidArgumentError("a new key cannot be revoked already");
  if (k.not_after_unix_nanos() != 0 && k.not_after_unix_nanos() <= k.not_before_unix_nanos()) {
    return absl::InvalidArgumentError("a key's not_after must be after its not_before");
  }
  return absl::OkStatus();
}

absl::Status ValidateActor(const v1::ActorEntry& a) {
  RETURN_IF_ERROR(storage::ValidateStreamSegment(a.user_id(), "actor user id"));
  if (a.roles().empty()) return absl::InvalidArgumentError("an actor needs at least one role");
  for (const std::string& r : a.roles()) {
    if (!KnownRoles().contains(r)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown role '", r, "'"));
    }
  }
  return absl::OkStatus();
}

// An agency's own admin edits its profile but not its roles (sender,
// receiver, compliance, emergency decide what the hub lets it do).
absl::Status KeepsWhatTheHubGrants(const v1::AgencyRecord& current, const v1::AgencyProfile& next) {
  const std::set<std::string> now(current.profile().roles().begin(),
                                  current.profile().roles().end());
  const std::set<std::string> asked(next.roles().begin(), next.roles().end());
  if (now != asked) {
    return absl::PermissionDeniedError(
        "an agency's roles are granted by the hub admin; its own admin may not change them");
  }
  if (current.profile().source() != next.source()) {
    return absl::PermissionDeniedError(
        "an agency's profile source is the hub admin's to set; its own admin may not change it");
  }
  return absl::OkStatus();
}

// An agency's own admin gives its staff the roles the agency holds, and admin.
absl::Status RolesItMayGive(const v1::AgencyRecord& current, const v1::ActorEntry& actor) {
  for (const std::string& r : actor.roles()) {
    if (r == kAgencyAdminRole) continue;
    if (std::find(current.profile().roles().begin(), current.profile().roles().end(), r) ==
        current.profile().roles().end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("the agency does not hold the role '", r, "', so its staff cannot"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateProfile(const v1::AgencyProfile& p, const std::set<std::string>& codes) {
  if (p.display_name().empty()) return absl::InvalidArgumentError("an agency needs a display name");
  for (const std::string& s : p.services()) {
    if (!codes.contains(s))
      return absl::InvalidArgumentError(absl::StrCat("unknown service code '", s, "'"));
  }
  if (p.kind() == v1::AGENCY_KIND_UNSPECIFIED)
    return absl::InvalidArgumentError("an agency needs a kind");
  for (const std::string& r : p.roles()) {
    if (!KnownRoles().contains(r))
      return absl::InvalidArgumentError(absl::StrCat("unknown role '", r, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- DirectoryState ----

absl::StatusOr<uint64_t> DirectoryState::AppliedSeq() {
  absl::MutexLock lock(&mu_);
  return applied_;
}

absl::Status DirectoryState::Apply(const std::vector<v1::Event>& events) {
  absl::MutexLock lock(&mu_);
  for (const v1::Event& e : events) {
    const std::string& stream = e.header().stream();
    if (absl::StartsWith(stream, kAgencyPrefix) || absl::StartsWith(stream, kCapacityPrefix)) {
      RETURN_IF_ERROR(ApplyOne(e));
    } else if (absl::StartsWith(stream, names::stream::kAuthorityPrefix)) {
      RETURN_IF_ERROR(ApplyAuthority(e));
    }
    applied_ = e.header().seq();
  }
  return absl::OkStatus();
}

storage::Projection::PayloadFilter DirectoryState::PayloadsWanted() const {
  return [](const v1::EventHeader& h) {
    return absl::StartsWith(h.stream(), kAgencyPrefix) ||
           absl::StartsWith(h.stream(), kCapacityPrefix) ||
           absl::StartsWith(h.stream(), names::stream::kAuthorityPrefix);
  };
}

namespace {

absl::Status Unparsed(uint64_t seq) {
  return absl::DataLossError(absl::StrCat("directory event seq ", seq, " does not parse"));
}

// One signed change of an existing agency, folded into its record. False
// when the change has a stream of its own (capacity) and so leaves the
// agency's version as it is.
absl::StatusOr<bool> ApplyChange(const v1::Envelope& env, uint64_t seq, absl::Time at,
                                 uint64_t stream_version, v1::AgencyRecord* record) {
  v1::AgencyRecord& r = *record;
  const std::string& type = env.payload_type();
  if (type == names::payload::kUpdateAgencyProfile) {
    v1::UpdateAgencyProfile p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    *r.mutable_profile() = p.profile();
  } else if (type == names::payload::kSetAgencyStatus) {
    v1::SetAgencyStatus p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    r.set_active(p.active());
  } else if (type == names::payload::kAddAgencyKey) {
    v1::AddAgencyKey p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    *r.add_keys() = p.key();
  } else if (type == names::payload::kRevokeAgencyKey) {
    v1::RevokeAgencyKey p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    for (v1::AgencyKey& k : *r.mutable_keys()) {
      if (k.key_id() != p.key_id()) continue;
      // "Now" is the commit time recorded in the ledger: every replay agrees.
      k.set_revoked_unix_nanos(p.revoked_unix_nanos() != 0 ? p.revoked_unix_nanos()
                                                           : absl::ToUnixNanos(at));
      k.set_revocation_reason(p.reason());
    }
  } else if (type == names::payload::kSetActor) {
    v1::SetActor p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    bool replaced = false;
    for (v1::ActorEntry& a : *r.mutable_actors()) {
      if (a.user_id() == p.actor().user_id()) {
        a = p.actor();
        replaced = true;
      }
    }
    if (!replaced) *r.add_actors() = p.actor();
  } else if (type == names::payload::kReportCapacity) {
    v1::ReportCapacity p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    v1::CapacityEntry entry;
    entry.set_service(p.service());
    entry.set_open_slots(p.open_slots());
    entry.set_reported_unix_nanos(absl::ToUnixNanos(at));
    entry.set_seq(seq);
    bool replaced = false;
    for (v1::CapacityEntry& c : *r.mutable_capacity()) {
      if (c.service() == p.service()) {
        c = entry;
        replaced = true;
      }
    }
    if (!replaced) *r.add_capacity() = entry;
    r.set_capacity_version(stream_version);
    return false;  // capacity has its own stream; the agency's version is unchanged
  } else if (type == names::payload::kRemoveActor) {
    v1::RemoveActor p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    auto* actors = r.mutable_actors();
    for (int i = 0; i < actors->size(); ++i) {
      if (actors->Get(i).user_id() == p.user_id()) {
        actors->DeleteSubrange(i, 1);
        break;
      }
    }
  } else {
    return absl::DataLossError(
        absl::StrCat("directory event seq ", seq, " has unknown type ", type));
  }
  return true;
}

}  // namespace

absl::Status DirectoryState::ApplySlot(const v1::Event& event) {
  const uint64_t seq = event.header().seq();
  const std::string& etype = event.header().type();
  // Hub-written, in capacity/<id>: a slot held by an accepted referral.
  v1::CapacitySlot slot;
  if (!slot.ParseFromString(event.payload())) return Unparsed(seq);
  const std::string id = event.header().stream().substr(sizeof(kCapacityPrefix) - 1);
  auto it = agencies_.find(id);
  if (it == agencies_.end()) {
    return absl::DataLossError(
        absl::StrCat("directory event seq ", seq, " changes an unknown agency"));
  }
  it->second.set_capacity_version(event.header().stream_version());
  for (v1::CapacityEntry& c : *it->second.mutable_capacity()) {
    if (c.service() != slot.service()) continue;
    auto* holders = c.mutable_holders();
    auto h = std::find(holders->begin(), holders->end(), slot.referral());
    if (etype == names::event::kSlotTaken && h == holders->end())
      *c.add_holders() = slot.referral();
    // A slot taken before the last report is already counted by the report.
    if (etype == names::event::kSlotReleased && h != holders->end()) holders->erase(h);
  }
  return absl::OkStatus();
}

absl::Status DirectoryState::ApplyOne(const v1::Event& event) {
  const uint64_t seq = event.header().seq();
  const std::string& etype = event.header().type();
  if (etype == names::event::kSlotTaken || etype == names::event::kSlotReleased) {
    // Hub-written, in capacity/<id>: a slot held by an accepted referral.
    return ApplySlot(event);
  }
  v1::Envelope env;
  if (!env.ParseFromString(event.payload())) {
    return absl::DataLossError(absl::StrCat("directory event seq ", seq, " holds no envelope"));
  }
  const absl::Time at = absl::FromUnixNanos(event.header().commit_time_unix_nanos());
  const bool capacity = absl::StartsWith(event.header().stream(), kCapacityPrefix);
  const std::string id = event.header().stream().substr(capacity ? sizeof(kCapacityPrefix) - 1
                                                                 : sizeof(kAgencyPrefix) - 1);
  const std::string& type = env.payload_type();
  if (type == names::payload::kRegisterAgency) {
    v1::RegisterAgency p;
    if (!p.ParseFromString(env.payload())) return Unparsed(seq);
    v1::AgencyRecord r;
    r.set_agency_id(id);
    *r.mutable_profile() = p.profile();
    r.set_active(true);
    if (p.has_initial_key()) *r.add_keys() = p.initial_key();
    *r.mutable_actors() = p.actors();
    agencies_[id] = std::move(r);
  } else {
    auto it = agencies_.find(id);
    if (it == agencies_.end()) {
      return absl::DataLossError(
          absl::StrCat("directory event seq ", seq, " changes an unknown agency"));
    }
    ASSIGN_OR_RETURN(bool versioned,
                     ApplyChange(env, seq, at, event.header().stream_version(), &it->second));
    if (!versioned) return absl::OkStatus();
  }
  agencies_[id].set_version(event.header().stream_version());
  return absl::OkStatus();
}

absl::Status DirectoryState::ApplyAuthority(const v1::Event& event) {
  const uint64_t seq = event.header().seq();
  v1::Envelope env;
  v1::SetIdentifierAuthority p;
  if (!env.ParseFromString(event.payload()) ||
      env.payload_type() != names::payload::kSetIdentifierAuthority ||
      !p.ParseFromString(env.payload())) {
    return Unparsed(seq);
  }
  std::string name = p.authority();
  authorities_[name] = {std::move(p), event.header().stream_version()};
  return absl::OkStatus();
}

AuthorityUse DirectoryState::Authority(absl::string_view agency_id,
                                       absl::string_view authority) const {
  AuthorityUse use;
  if (agency_id.empty() || agency_id == kHubAgency) return use;
  if (absl::StartsWith(authority, absl::StrCat(agency_id, "/"))) {
    use.holds = true;
    return use;
  }
  absl::MutexLock lock(&mu_);
  auto it = authorities_.find(authority);
  if (it == authorities_.end()) return use;
  const v1::SetIdentifierAuthority& r = it->second.first;
  use.holds = std::find(r.holders().begin(), r.holders().end(), agency_id) != r.holders().end();
  use.shared = r.shared();
  return use;
}

std::optional<std::pair<v1::SetIdentifierAuthority, uint64_t>> DirectoryState::AuthorityRecord(
    absl::string_view authority) const {
  absl::MutexLock lock(&mu_);
  auto it = authorities_.find(authority);
  if (it == authorities_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::optional<trust::AgencyView>> DirectoryState::FindAgency(
    absl::string_view agency_id) {
  trust::AgencyView view;
  if (agency_id == kHubAgency) {
    for (const std::string& u : admin_.users) view.actor_roles[u] = {kHubAdminRole};
    trust::KeyView k;
    k.public_key = admin_.public_key;
    view.keys[admin_.key_id] = k;
    return std::optional<trust::AgencyView>(std::move(view));
  }
  absl::MutexLock lock(&mu_);
  auto it = agencies_.find(std::string(agency_id));
  if (it == agencies_.end()) return std::optional<trust::AgencyView>();
  const v1::AgencyRecord& r = it->second;
  view.active = r.active();
  for (const v1::ActorEntry& a : r.actors()) {
    if (a.inactive()) {
      view.inactive_actors.insert(a.user_id());
      continue;
    }
    view.actor_roles[a.user_id()] = std::set<std::string>(a.roles().begin(), a.roles().end());
  }
  for (const v1::AgencyKey& k : r.keys()) view.keys[k.key_id()] = ToKeyView(k);
  return std::optional<trust::AgencyView>(std::move(view));
}

std::optional<v1::AgencyRecord> DirectoryState::Get(absl::string_view agency_id) const {
  absl::MutexLock lock(&mu_);
  auto it = agencies_.find(std::string(agency_id));
  if (it == agencies_.end()) return std::nullopt;
  return it->second;
}

std::vector<v1::AgencyRecord> DirectoryState::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::AgencyRecord> out;
  for (const auto& [id, r] : agencies_) out.push_back(r);
  return out;
}

// ---- DirectoryCore ----

trust::RpcPolicy DirectoryPolicy(absl::Duration max_clock_skew) {
  return policy::DirectoryTable().Envelopes("Submit", max_clock_skew);
}

DirectoryCore::DirectoryCore(storage::Ledger* ledger, DirectoryState* state,
                             storage::ProjectionRunner* runner, Clock* clock,
                             absl::Duration max_clock_skew, std::set<std::string> service_codes)
    : ledger_(ledger),
      state_(state),
      runner_(runner),
      clock_(clock),
      policy_(policy::DirectoryTable().Envelopes("Submit", max_clock_skew, state)),
      gate_(&policy::DirectoryTable(), state, /*tls=*/false),
      seen_(ledger),
      service_codes_(std::move(service_codes)) {}

absl::StatusOr<v1::AppendRequest> DirectoryCore::PlanAuthority(const trust::VerifiedEnvelope& v,
                                                               absl::string_view bytes) const {
  const auto& p = static_cast<const v1::SetIdentifierAuthority&>(*v.payload);
  RETURN_IF_ERROR(storage::ValidateToken(p.authority(), "authority"));
  if (const size_t slash = p.authority().find('/'); slash != std::string::npos) {
    return absl::InvalidArgumentError(
        "an authority '<agency id>/<name>' belongs to that agency and needs no record; a "
        "record names an authority without '/'");
  }
  if (p.reason().empty()) return absl::InvalidArgumentError("an authority change states why");
  std::set<std::string> seen;
  for (const std::string& h : p.holders()) {
    std::optional<v1::AgencyRecord> a = state_->Get(h);
    if (!a.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", h));
    if (!seen.insert(h).second)
      return absl::InvalidArgumentError(absl::StrCat("agency ", h, " is named twice"));
  }
  const std::string stream = names::stream::Authority(p.authority());
  std::optional<std::pair<v1::SetIdentifierAuthority, uint64_t>> current =
      state_->AuthorityRecord(p.authority());
  v1::AppendRequest req;
  trust::AddEvent(&req, stream, names::event::kSetIdentifierAuthority, "", std::string(bytes));
  trust::Expect(&req, stream, current.has_value() ? current->second : 0);
  return req;
}

absl::StatusOr<v1::AppendRequest> DirectoryCore::Plan(const trust::VerifiedEnvelope& v,
                                                      absl::string_view bytes,
                                                      absl::Time received) const {
  const v1::Envelope& e = v.envelope;
  if (e.payload_type() == names::payload::kSetIdentifierAuthority) return PlanAuthority(v, bytes);
  const google::protobuf::Message& payload = *v.payload;
  const google::protobuf::FieldDescriptor* id_field =
      payload.GetDescriptor()->FindFieldByName("agency_id");
  CARELOOP_CHECK(id_field != nullptr);  // every directory payload names its agency
  const std::string target = payload.GetReflection()->GetString(payload, id_field);
  RETURN_IF_ERROR(storage::ValidateAgencyId(target));
  if (target == kHubAgency) return absl::InvalidArgumentError("the agency id 'hub' is reserved");
  if (e.sender_agency() != kHubAgency && e.sender_agency() != target) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " may not change agency ", target));
  }
  std::optional<v1::AgencyRecord> current = state_->Get(target);
  const std::string& type = e.payload_type();
  v1::AppendRequest req;
  std::string change_stream = absl::StrCat(kAgencyPrefix, target);
  if (type == names::payload::kReportCapacity) {
    if (!current.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", target));
    const auto& p = static_cast<const v1::ReportCapacity&>(payload);
    if (std::find(current->profile().services().begin(), current->profile().services().end(),
                  p.service()) == current->profile().services().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("agency ", target, " does not offer the service '", p.service(), "'"));
    }
    change_stream = absl::StrCat(kCapacityPrefix, target);
  }
  v1::Precondition* pre = req.add_preconditions();
  pre->set_stream(change_stream);
  if (type == names::payload::kReportCapacity) {
    req.clear_preconditions();  // the latest report wins; nothing to race
  } else if (type == names::payload::kRegisterAgency) {
    if (current.has_value())
      return absl::AlreadyExistsError(absl::StrCat("agency ", target, " is already registered"));
    const auto& p = static_cast<const v1::RegisterAgency&>(payload);
    RETURN_IF_ERROR(ValidateProfile(p.profile(), service_codes_));
    if (p.has_initial_key()) {
      RETURN_IF_ERROR(ValidateKey(p.initial_key()));
    } else if (p.actors_size() > 0) {
      return absl::InvalidArgumentError(
          "an agency listed without a key has no actors yet: add its key, then its actors");
    }
    for (const auto& a : p.actors()) RETURN_IF_ERROR(ValidateActor(a));
    pre->set_must_not_exist(true);
  } else {
    if (!current.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", target));
    pre->set_expected_version(current->version());
    const bool by_itself = e.sender_agency() != kHubAgency;
    if (type == names::payload::kUpdateAgencyProfile) {
      const auto& p = static_cast<const v1::UpdateAgencyProfile&>(payload);
      RETURN_IF_ERROR(ValidateProfile(p.profile(), service_codes_));
      if (by_itself) RETURN_IF_ERROR(KeepsWhatTheHubGrants(*current, p.profile()));
    } else if (type == names::payload::kAddAgencyKey) {
      const auto& p = static_cast<const v1::AddAgencyKey&>(payload);
      RETURN_IF_ERROR(ValidateKey(p.key()));
      for (const auto& k : current->keys()) {
        if (k.key_id() == p.key().key_id()) {
          return absl::AlreadyExistsError(
              absl::StrCat("agency ", target, " already has a key ", k.key_id()));
        }
      }
    } else if (type == names::payload::kRevokeAgencyKey) {
      const auto& p = static_cast<const v1::RevokeAgencyKey&>(payload);
      bool found = false;
      for (const auto& k : current->keys()) {
        if (k.key_id() != p.key_id()) continue;
        found = true;
        if (k.revoked_unix_nanos() != 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("key ", k.key_id(), " is already revoked"));
        }
      }
      if (!found)
        return absl::NotFoundError(absl::StrCat("agency ", target, " has no key ", p.key_id()));
      if (p.revoked_unix_nanos() != 0 &&
          absl::FromUnixNanos(p.revoked_unix_nanos()) < received - policy_.max_skew) {
        // Revoking in the past would make accepted envelopes look invalid.
        return absl::InvalidArgumentError("a key cannot be revoked in the past");
      }
    } else if (type == names::payload::kSetActor) {
      const auto& p = static_cast<const v1::SetActor&>(payload);
      RETURN_IF_ERROR(ValidateActor(p.actor()));
      if (by_itself) RETURN_IF_ERROR(RolesItMayGive(*current, p.actor()));
    } else if (type == names::payload::kRemoveActor) {
      const auto& p = static_cast<const v1::RemoveActor&>(payload);
      bool found = false;
      for (const auto& a : current->actors()) found |= a.user_id() == p.user_id();
      if (!found)
        return absl::NotFoundError(absl::StrCat("agency ", target, " has no actor ", p.user_id()));
    }
  }
  v1::EventInput* change = trust::AddEvent(&req, change_stream, trust::ShortTypeName(type));
  change->add_agencies(target);
  if (e.sender_agency() != kHubAgency && e.sender_agency() != target)
    change->add_agencies(e.sender_agency());
  change->set_payload(std::string(bytes));  // the envelope exactly as received
  return req;
}

absl::StatusOr<v1::Receipt> DirectoryCore::Submit(absl::string_view bytes) {
  ASSIGN_OR_RETURN(
      trust::Accepted a,
      trust::AcceptSigned(bytes, policy_, *state_, seen_, ledger_, clock_->Now(),
                          [this](const trust::VerifiedEnvelope& v, absl::string_view b,
                                 absl::Time received) { return Plan(v, b, received); }));
  if (a.last_seq != 0) RETURN_IF_ERROR(runner_->WaitFor(a.last_seq, kProjectionWait));
  return ledger_->GetReceipt(a.change_seq);
}

absl::StatusOr<std::string> DirectoryCore::Admit(const policy::Caller& caller,
                                                 absl::string_view method) const {
  RETURN_IF_ERROR(gate_.Admit(caller, method));
  return caller.CoreId();
}

absl::StatusOr<v1::Receipt> DirectoryCore::GetReceipt(const v1::GetEnvelopeReceiptRequest& req,
                                                      const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string viewer, Admit(caller, "GetReceipt"));
  const std::string& sender = req.sender_agency();
  const std::string& message_id = req.message_id();
  if (viewer != sender)
    return absl::PermissionDeniedError("an agency fetches receipts of its own envelopes only");
  RETURN_IF_ERROR(storage::ValidateStreamSegment(message_id, "message id"));
  ASSIGN_OR_RETURN(std::optional<trust::SeenMessage> seen, seen_.Find(sender, message_id));
  if (!seen.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no envelope ", message_id, " from ", sender, " was accepted"));
  }
  return ledger_->GetReceipt(seen->seq);
}

absl::StatusOr<v1::AgencyRecord> DirectoryCore::GetAgency(const v1::GetAgencyRequest& req,
                                                          const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string viewer, Admit(caller, "GetAgency"));
  if (req.min_seq() > 0) RETURN_IF_ERROR(runner_->WaitFor(req.min_seq(), kProjectionWait));
  std::optional<v1::AgencyRecord> r = state_->Get(req.agency_id());
  if (!r.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", req.agency_id()));
  MaskFor(&*r, viewer);
  return *r;
}

void DirectoryCore::MaskFor(v1::AgencyRecord* r, absl::string_view viewer) const {
  if (viewer != r->agency_id() && viewer != kHubAgency) {
    // Which referrals hold slots is the agency's business.
    for (v1::CapacityEntry& c : *r->mutable_capacity()) c.clear_holders();
  }
  if (r->profile().address().confidential() && viewer != r->agency_id() && viewer != kHubAgency) {
    // Accepted referrals (which would open it) come with the referral service.
    r->mutable_profile()->clear_address();
    r->mutable_profile()->mutable_address()->set_confidential(true);
  }
}

absl::StatusOr<std::vector<v1::AgencyRecord>> DirectoryCore::Search(
    const v1::SearchAgenciesRequest& req, const policy::Caller& caller) {
  ASSIGN_OR_RETURN(const std::string viewer, Admit(caller, "SearchAgencies"));
  if (req.min_seq() > 0) RETURN_IF_ERROR(runner_->WaitFor(req.min_seq(), kProjectionWait));
  auto has = [](const auto& list, const std::string& value) {
    return value.empty() || std::find(list.begin(), list.end(), value) != list.end();
  };
  std::vector<v1::AgencyRecord> out;
  for (v1::AgencyRecord& r : state_->All()) {
    const v1::AgencyProfile& p = r.profile();
    if (!req.include_suspended() && !r.active()) continue;
    if (req.kind() != v1::AGENCY_KIND_UNSPECIFIED && p.kind() != req.kind()) continue;
    if (!has(p.services(), req.service()) || !has(p.languages(), req.language()) ||
        !has(p.roles(), req.role())) {
      continue;
    }
    if (!has(p.area().postal_codes(), req.postal_code()) || !has(p.area().counties(), req.county()))
      continue;
    if (req.with_open_capacity()) {
      bool open = false;
      for (const v1::CapacityEntry& c : r.capacity()) {
        open |= c.service() == req.service() && OpenSlots(c) > 0;
      }
      if (!open) continue;
    }
    MaskFor(&r, viewer);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace careloop::directory
