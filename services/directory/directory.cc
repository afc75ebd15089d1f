#include "services/directory/directory.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/status.h"
#include "storage/validate.h"

namespace careloop::directory {
namespace {

constexpr char kStreamPrefix[] = "agency/";
constexpr char kCapacityPrefix[] = "capacity/";
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

absl::Status ValidateSegment(absl::string_view value, absl::string_view what) {
  if (value.empty() || value.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 to 128 bytes"));
  }
  for (char c : value) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok)
      return absl::InvalidArgumentError(absl::StrCat(what, " may hold only [A-Za-z0-9._:@-]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(const v1::AgencyKey& k) {
  RETURN_IF_ERROR(ValidateSegment(k.key_id(), "key id"));
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
  RETURN_IF_ERROR(ValidateSegment(a.user_id(), "actor user id"));
  if (a.roles().empty()) return absl::InvalidArgumentError("an actor needs at least one role");
  for (const std::string& r : a.roles()) {
    if (!KnownRoles().contains(r)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown role '", r, "'"));
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

const std::set<std::string>& DefaultServiceCodes() {
  static const std::set<std::string> codes = {
      // HL7 SDOH Clinical Care IG categories.
      "food-insecurity", "housing-instability", "homelessness", "inadequate-housing",
      "transportation-insecurity", "utility-insecurity", "financial-insecurity",
      "material-hardship", "employment-status", "educational-attainment", "veteran-status",
      "stress", "social-connection", "intimate-partner-violence", "elder-abuse",
      "personal-health-literacy", "health-insurance-coverage-status", "medical-cost-burden",
      "digital-literacy", "digital-access",
      // careloop's own.
      "behavioral-health", "substance-use-treatment", "home-health", "primary-care", "legal-aid"};
  return codes;
}

// ---- DirectoryState ----

absl::StatusOr<uint64_t> DirectoryState::AppliedSeq() {
  absl::MutexLock lock(&mu_);
  return applied_;
}

absl::Status DirectoryState::Apply(const std::vector<v1::Event>& events) {
  absl::MutexLock lock(&mu_);
  for (const v1::Event& e : events) {
    const std::string& stream = e.header().stream();
    if (absl::StartsWith(stream, kStreamPrefix) || absl::StartsWith(stream, kCapacityPrefix)) {
      RETURN_IF_ERROR(ApplyOne(e));
    }
    applied_ = e.header().seq();
  }
  return absl::OkStatus();
}

storage::Projection::PayloadFilter DirectoryState::PayloadsWanted() const {
  return [](const v1::EventHeader& h) {
    return absl::StartsWith(h.stream(), kStreamPrefix) ||
           absl::StartsWith(h.stream(), kCapacityPrefix);
  };
}

absl::Status DirectoryState::ApplyOne(const v1::Event& event) {
  const uint64_t seq = event.header().seq();
  const std::string& etype = event.header().type();
  if (etype == "SlotTaken" || etype == "SlotReleased") {
    // Hub-written, in capacity/<id>: a slot held by an accepted referral.
    v1::CapacitySlot slot;
    if (!slot.ParseFromString(event.payload())) {
      return absl::DataLossError(absl::StrCat("directory event seq ", seq, " does not parse"));
    }
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
      if (etype == "SlotTaken" && h == holders->end()) *c.add_holders() = slot.referral();
      // A slot taken before the last report is already counted by the report.
      if (etype == "SlotReleased" && h != holders->end()) holders->erase(h);
    }
    return absl::OkStatus();
  }
  v1::Envelope env;
  if (!env.ParseFromString(event.payload())) {
    return absl::DataLossError(absl::StrCat("directory event seq ", seq, " holds no envelope"));
  }
  const absl::Time at = absl::FromUnixNanos(event.header().commit_time_unix_nanos());
  const bool capacity = absl::StartsWith(event.header().stream(), kCapacityPrefix);
  const std::string id = event.header().stream().substr(capacity ? sizeof(kCapacityPrefix) - 1
                                                                 : sizeof(kStreamPrefix) - 1);
  const std::string& type = env.payload_type();
  auto bad = [&]() {
    return absl::DataLossError(absl::StrCat("directory event seq ", seq, " does not parse"));
  };
  if (type == "careloop.v1.RegisterAgency") {
    v1::RegisterAgency p;
    if (!p.ParseFromString(env.payload())) return bad();
    v1::AgencyRecord r;
    r.set_agency_id(id);
    *r.mutable_profile() = p.profile();
    r.set_active(true);
    *r.add_keys() = p.initial_key();
    *r.mutable_actors() = p.actors();
    agencies_[id] = std::move(r);
  } else {
    auto it = agencies_.find(id);
    if (it == agencies_.end()) {
      return absl::DataLossError(
          absl::StrCat("directory event seq ", seq, " changes an unknown agency"));
    }
    v1::AgencyRecord& r = it->second;
    if (type == "careloop.v1.UpdateAgencyProfile") {
      v1::UpdateAgencyProfile p;
      if (!p.ParseFromString(env.payload())) return bad();
      *r.mutable_profile() = p.profile();
    } else if (type == "careloop.v1.SetAgencyStatus") {
      v1::SetAgencyStatus p;
      if (!p.ParseFromString(env.payload())) return bad();
      r.set_active(p.active());
    } else if (type == "careloop.v1.AddAgencyKey") {
      v1::AddAgencyKey p;
      if (!p.ParseFromString(env.payload())) return bad();
      *r.add_keys() = p.key();
    } else if (type == "careloop.v1.RevokeAgencyKey") {
      v1::RevokeAgencyKey p;
      if (!p.ParseFromString(env.payload())) return bad();
      for (v1::AgencyKey& k : *r.mutable_keys()) {
        if (k.key_id() != p.key_id()) continue;
        // "Now" is the commit time recorded in the ledger: every replay agrees.
        k.set_revoked_unix_nanos(p.revoked_unix_nanos() != 0 ? p.revoked_unix_nanos()
                                                             : absl::ToUnixNanos(at));
        k.set_revocation_reason(p.reason());
      }
    } else if (type == "careloop.v1.SetActor") {
      v1::SetActor p;
      if (!p.ParseFromString(env.payload())) return bad();
      bool replaced = false;
      for (v1::ActorEntry& a : *r.mutable_actors()) {
        if (a.user_id() == p.actor().user_id()) {
          a = p.actor();
          replaced = true;
        }
      }
      if (!replaced) *r.add_actors() = p.actor();
    } else if (type == "careloop.v1.ReportCapacity") {
      v1::ReportCapacity p;
      if (!p.ParseFromString(env.payload())) return bad();
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
      r.set_capacity_version(event.header().stream_version());
      return absl::OkStatus();  // capacity has its own stream; the agency's version is unchanged
    } else if (type == "careloop.v1.RemoveActor") {
      v1::RemoveActor p;
      if (!p.ParseFromString(env.payload())) return bad();
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
  }
  agencies_[id].set_version(event.header().stream_version());
  return absl::OkStatus();
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

// ---- LedgerMessageLog ----

std::string LedgerMessageLog::StreamFor(absl::string_view sender, absl::string_view message_id) {
  return absl::StrCat("msg/", sender, "/", message_id);
}

absl::StatusOr<std::optional<trust::SeenMessage>> LedgerMessageLog::Find(
    absl::string_view sender, absl::string_view message_id) {
  v1::ReadStreamRequest req;
  req.set_stream(StreamFor(sender, message_id));
  req.set_limit(1);
  absl::StatusOr<v1::ReadResponse> marker = ledger_->ReadStream(req);
  if (absl::IsInvalidArgument(marker.status())) return std::optional<trust::SeenMessage>();
  RETURN_IF_ERROR(marker.status());
  if (marker->events().empty()) return std::optional<trust::SeenMessage>();
  // The change is the event just before its marker (one append).
  const uint64_t seq = marker->events(0).header().seq() - 1;
  v1::ReadRequest read;
  read.set_from_seq(seq);
  read.set_limit(1);
  read.set_include_payloads(true);
  ASSIGN_OR_RETURN(v1::ReadResponse change, ledger_->Read(read));
  if (change.events().empty() || change.events(0).header().seq() != seq) {
    return absl::DataLossError(
        absl::StrCat("the change before message marker seq ", seq + 1, " is missing"));
  }
  return std::optional<trust::SeenMessage>(trust::SeenMessage{change.events(0).payload(), seq});
}

// ---- DirectoryCore ----

trust::RpcPolicy DirectoryPolicy(absl::Duration max_clock_skew) {
  trust::RpcPolicy p;
  p.max_skew = max_clock_skew;
  for (const char* t : {"careloop.v1.RegisterAgency", "careloop.v1.SetAgencyStatus",
                        "careloop.v1.AddAgencyKey", "careloop.v1.RevokeAgencyKey"}) {
    p.roles_by_payload_type[t] = {kHubAdminRole};
  }
  for (const char* t :
       {"careloop.v1.UpdateAgencyProfile", "careloop.v1.SetActor", "careloop.v1.RemoveActor"}) {
    p.roles_by_payload_type[t] = {kHubAdminRole, kAgencyAdminRole};
  }
  p.roles_by_payload_type["careloop.v1.ReportCapacity"] = {kHubAdminRole, kAgencyAdminRole,
                                                           "receiver"};
  return p;
}

DirectoryCore::DirectoryCore(storage::Ledger* ledger, DirectoryState* state,
                             storage::ProjectionRunner* runner, Clock* clock,
                             absl::Duration max_clock_skew, std::set<std::string> service_codes)
    : ledger_(ledger),
      state_(state),
      runner_(runner),
      clock_(clock),
      policy_(DirectoryPolicy(max_clock_skew)),
      seen_(ledger),
      service_codes_(std::move(service_codes)) {}

absl::StatusOr<v1::AppendRequest> DirectoryCore::Plan(const trust::VerifiedEnvelope& v,
                                                      absl::string_view bytes,
                                                      absl::Time received) const {
  const v1::Envelope& e = v.envelope;
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
  std::string change_stream = absl::StrCat(kStreamPrefix, target);
  if (type == "careloop.v1.ReportCapacity") {
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
  if (type == "careloop.v1.ReportCapacity") {
    req.clear_preconditions();  // the latest report wins; nothing to race
  } else if (type == "careloop.v1.RegisterAgency") {
    if (current.has_value())
      return absl::AlreadyExistsError(absl::StrCat("agency ", target, " is already registered"));
    const auto& p = static_cast<const v1::RegisterAgency&>(payload);
    RETURN_IF_ERROR(ValidateProfile(p.profile(), service_codes_));
    RETURN_IF_ERROR(ValidateKey(p.initial_key()));
    for (const auto& a : p.actors()) RETURN_IF_ERROR(ValidateActor(a));
    pre->set_must_not_exist(true);
  } else {
    if (!current.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", target));
    pre->set_expected_version(current->version());
    if (type == "careloop.v1.UpdateAgencyProfile") {
      RETURN_IF_ERROR(ValidateProfile(
          static_cast<const v1::UpdateAgencyProfile&>(payload).profile(), service_codes_));
    } else if (type == "careloop.v1.AddAgencyKey") {
      const auto& p = static_cast<const v1::AddAgencyKey&>(payload);
      RETURN_IF_ERROR(ValidateKey(p.key()));
      for (const auto& k : current->keys()) {
        if (k.key_id() == p.key().key_id()) {
          return absl::AlreadyExistsError(
              absl::StrCat("agency ", target, " already has a key ", k.key_id()));
        }
      }
    } else if (type == "careloop.v1.RevokeAgencyKey") {
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
    } else if (type == "careloop.v1.SetActor") {
      RETURN_IF_ERROR(ValidateActor(static_cast<const v1::SetActor&>(payload).actor()));
    } else if (type == "careloop.v1.RemoveActor") {
      const auto& p = static_cast<const v1::RemoveActor&>(payload);
      bool found = false;
      for (const auto& a : current->actors()) found |= a.user_id() == p.user_id();
      if (!found)
        return absl::NotFoundError(absl::StrCat("agency ", target, " has no actor ", p.user_id()));
    }
  }
  v1::EventInput* change = req.add_events();
  change->set_stream(change_stream);
  change->set_type(trust::ShortTypeName(type));
  change->add_agencies(target);
  if (e.sender_agency() != kHubAgency && e.sender_agency() != target)
    change->add_agencies(e.sender_agency());
  change->set_payload(std::string(bytes));  // the envelope exactly as received
  return req;
}

absl::StatusOr<PlannedChange> PlanSigned(absl::string_view bytes, const trust::RpcPolicy& policy,
                                         trust::EnvelopeDirectory& directory,
                                         LedgerMessageLog& seen, absl::Time received,
                                         const PlanFn& plan) {
  // The message id names a ledger stream, so it is held to the stream charset.
  ASSIGN_OR_RETURN(v1::Envelope parsed, trust::ParseEnvelope(bytes, policy.limits));
  RETURN_IF_ERROR(ValidateSegment(parsed.message_id(), "envelope: message_id"));
  if (parsed.sender_agency() != kHubAgency)
    RETURN_IF_ERROR(storage::ValidateAgencyId(parsed.sender_agency()));
  ASSIGN_OR_RETURN(
      trust::VerifiedEnvelope v,
      trust::VerifyParsedEnvelope(std::move(parsed), bytes, policy, directory, seen, received));
  PlannedChange out;
  out.accepted.envelope = v.envelope;
  if (v.duplicate) {
    out.accepted.change_seq = v.original_seq;
    return out;
  }
  ASSIGN_OR_RETURN(v1::AppendRequest req, plan(v, bytes, received));
  // The marker goes right after the event that holds the envelope: that is
  // how LedgerMessageLog finds the envelope again.
  int change = -1;
  for (int i = 0; i < req.events_size(); ++i) {
    if (req.events(i).payload() == bytes) change = i;
  }
  CARELOOP_CHECK(change >= 0);  // every plan stores the envelope
  const v1::Envelope& e = v.envelope;
  v1::EventInput marker;
  marker.set_stream(LedgerMessageLog::StreamFor(e.sender_agency(), e.message_id()));
  marker.set_type("EnvelopeAccepted");
  if (e.sender_agency() != kHubAgency) marker.add_agencies(e.sender_agency());
  req.mutable_events()->Add(std::move(marker));
  for (int i = req.events_size() - 1; i > change + 1; --i)
    req.mutable_events()->SwapElements(i, i - 1);
  v1::Precondition* once = req.add_preconditions();
  once->set_stream(LedgerMessageLog::StreamFor(e.sender_agency(), e.message_id()));
  once->set_must_not_exist(true);
  out.append = std::move(req);
  out.change = change;
  return out;
}

absl::StatusOr<Accepted> SettleSigned(const PlannedChange& planned, absl::string_view bytes,
                                      const absl::StatusOr<v1::Commit>& commit,
                                      LedgerMessageLog& seen) {
  const v1::Envelope& e = planned.accepted.envelope;
  if (absl::IsFailedPrecondition(commit.status())) {
    // Lost a race: the same message landed meanwhile (answer as a retry), or
    // what the plan read changed (the caller retries with the same message id).
    ASSIGN_OR_RETURN(std::optional<trust::SeenMessage> prior,
                     seen.Find(e.sender_agency(), e.message_id()));
    Accepted out;
    out.envelope = e;
    if (prior.has_value() && prior->envelope_bytes == bytes) {
      out.change_seq = prior->seq;
      return out;
    }
    if (prior.has_value()) {
      return absl::AlreadyExistsError("the message id was used for a different envelope meanwhile");
    }
    return absl::AbortedError(
        absl::StrCat("what the change depends on changed concurrently; retry "
                     "the same envelope (",
                     commit.status().message(), ")"));
  }
  RETURN_IF_ERROR(commit.status());
  Accepted out;
  out.envelope = e;
  out.change_seq = commit->first_seq() + static_cast<uint64_t>(planned.change);
  out.last_seq = commit->last_seq();
  return out;
}

absl::StatusOr<Accepted> AcceptSigned(absl::string_view bytes, const trust::RpcPolicy& policy,
                                      trust::EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                      storage::Ledger* ledger, absl::Time received,
                                      const PlanFn& plan) {
  ASSIGN_OR_RETURN(PlannedChange planned,
                   PlanSigned(bytes, policy, directory, seen, received, plan));
  if (!planned.append.has_value()) return std::move(planned.accepted);
  const absl::StatusOr<v1::Commit> commit = ledger->Append(*std::move(planned.append));
  return SettleSigned(planned, bytes, commit, seen);
}

absl::StatusOr<v1::Receipt> DirectoryCore::Submit(absl::string_view bytes) {
  ASSIGN_OR_RETURN(Accepted a,
                   AcceptSigned(bytes, policy_, *state_, seen_, ledger_, clock_->Now(),
                                [this](const trust::VerifiedEnvelope& v, absl::string_view b,
                                       absl::Time received) { return Plan(v, b, received); }));
  if (a.last_seq != 0) RETURN_IF_ERROR(runner_->WaitFor(a.last_seq, kProjectionWait));
  return ledger_->GetReceipt(a.change_seq);
}

absl::StatusOr<v1::Receipt> DirectoryCore::GetReceipt(absl::string_view sender,
                                                      absl::string_view message_id) {
  RETURN_IF_ERROR(ValidateSegment(message_id, "message id"));
  ASSIGN_OR_RETURN(std::optional<trust::SeenMessage> seen, seen_.Find(sender, message_id));
  if (!seen.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no envelope ", message_id, " from ", sender, " was accepted"));
  }
  return ledger_->GetReceipt(seen->seq);
}

absl::StatusOr<v1::AgencyRecord> DirectoryCore::GetAgency(absl::string_view agency_id,
                                                          absl::string_view viewer,
                                                          uint64_t min_seq) {
  if (min_seq > 0) RETURN_IF_ERROR(runner_->WaitFor(min_seq, kProjectionWait));
  std::optional<v1::AgencyRecord> r = state_->Get(agency_id);
  if (!r.has_value()) return absl::NotFoundError(absl::StrCat("no agency ", agency_id));
  MaskFor(&*r, viewer);
  return *r;
}

int64_t OpenSlots(const v1::CapacityEntry& c) {
  return static_cast<int64_t>(c.open_slots()) - c.holders_size();
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
    const v1::SearchAgenciesRequest& req, absl::string_view viewer) {
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
