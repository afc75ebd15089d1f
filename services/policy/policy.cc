#include "services/policy/policy.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/names/names.h"

namespace careloop::policy {

std::string Caller::CoreId() const {
  switch (kind) {
    case Kind::kAgency:
      return id;
    case Kind::kHubService:
    case Kind::kHubAdmin:
      return names::kHubAgency;
    case Kind::kNone:
      break;
  }
  return "";
}

std::string Caller::ForLog() const {
  switch (kind) {
    case Kind::kAgency:
      return absl::StrCat("agency:", id);
    case Kind::kHubService:
      return "hub";
    case Kind::kHubAdmin:
      return absl::StrCat("admin:", id);
    case Kind::kNone:
      break;
  }
  return "none";
}

Table::Table(std::string service, std::vector<Rule> rules)
    : service_(std::move(service)), rules_(std::move(rules)) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    CARELOOP_CHECK(rules_[i].parties != 0);
    for (size_t j = 0; j < i; ++j) {
      CARELOOP_CHECK(rules_[i].method != rules_[j].method ||
                     rules_[i].payload_type != rules_[j].payload_type);
    }
  }
}

const Rule* Table::Find(absl::string_view method, absl::string_view payload_type) const {
  for (const Rule& r : rules_) {
    if (r.method == method && r.payload_type == payload_type) return &r;
  }
  return nullptr;
}

trust::RpcPolicy Table::Envelopes(absl::string_view method, absl::Duration max_skew,
                                  const directory::Agencies* agencies) const {
  trust::RpcPolicy p;
  p.max_skew = max_skew;
  if (agencies != nullptr) {
    p.admit = [gate = Gate(this, agencies, false), m = std::string(method)](const v1::Envelope& e) {
      return gate.AdmitSigner(m, e);
    };
  }
  for (const Rule& r : rules_) {
    if (r.method == method && !r.payload_type.empty())
      p.roles_by_payload_type[r.payload_type] = r.actor_roles;
  }
  CARELOOP_CHECK(!p.roles_by_payload_type.empty());
  return p;
}

namespace {

std::string PartyNames(uint32_t parties) {
  std::vector<std::string> out;
  if (parties & kAgency) out.push_back("agency");
  if (parties & kCompliance) out.push_back("compliance");
  if (parties & kHubService) out.push_back("hub service");
  if (parties & kHubAdmin) out.push_back("hub admin");
  return absl::StrJoin(out, ", ");
}

std::string Cell(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string Markdown() {
  std::string out;
  for (const Table* t : AllTables()) {
    absl::StrAppend(&out, "\n### ", t->service(), "\n\n");
    absl::StrAppend(&out, "| RPC | signed payload | who | actor roles | object rule |\n");
    absl::StrAppend(&out, "|---|---|---|---|---|\n");
    for (const Rule& r : t->rules()) {
      std::string payload = r.payload_type.empty() ? "-" : absl::StrCat("`", r.payload_type, "`");
      std::string roles = r.actor_roles.empty() ? "-" : absl::StrJoin(r.actor_roles, ", ");
      absl::StrAppend(&out, "| ", r.method, " | ", payload, " | ", PartyNames(r.parties), " | ",
                      roles, " | ", Cell(r.object_rule), " |\n");
    }
  }
  return out;
}

uint32_t Gate::PartiesOf(const Caller& caller) const {
  switch (caller.kind) {
    case Caller::Kind::kHubService:
      return kHubService;
    case Caller::Kind::kHubAdmin:
      return kHubAdmin;
    case Caller::Kind::kAgency: {
      if (agencies_ == nullptr) return 0;
      std::optional<v1::AgencyRecord> r = agencies_->Get(caller.id);
      if (!r.has_value() || !r->active()) return 0;
      uint32_t parties = kAgency;
      if (Contains(r->profile().roles(), kComplianceRole)) parties |= kCompliance;
      return parties;
    }
    case Caller::Kind::kNone:
      break;
  }
  return 0;
}

absl::Status Gate::Refuse(const Caller& caller, absl::string_view method, absl::string_view code,
                          absl::Status status) const {
  log::Warn("authz.refused", {{"method", absl::StrCat(table_->service(), ".", method)},
                              {"caller", caller.ForLog()},
                              {"code", std::string(code)}});
  return status;
}

absl::Status Gate::Admit(const Caller& caller, absl::string_view method) const {
  const Rule* rule = table_->Find(method, "");
  if (rule == nullptr) {
    return Refuse(caller, method, "not_in_table",
                  absl::PermissionDeniedError(
                      absl::StrCat(table_->service(), ".", method, " is not open to any caller")));
  }
  if (caller.kind == Caller::Kind::kNone) {
    return Refuse(caller, method, "no_identity",
                  absl::UnauthenticatedError(
                      "the call names no identity this hub accepts (over mTLS: a client "
                      "certificate for spiffe://careloop/agency/<id>; in dev mode: "
                      "careloop --dev-agency, the x-careloop-dev-agency header)"));
  }
  if ((PartiesOf(caller) & rule->parties) == 0) {
    return Refuse(caller, method, "party",
                  absl::PermissionDeniedError(absl::StrCat(table_->service(), ".", method,
                                                           " is for ", PartyNames(rule->parties),
                                                           "; the caller is ", caller.ForLog())));
  }
  return absl::OkStatus();
}

namespace {
// Who signed an envelope: the hub's admin (sender "hub"), or an agency.
Caller SignerOf(const v1::Envelope& e) {
  return e.sender_agency() == names::kHubAgency ? Caller::HubAdmin(e.actor().user_id())
                                                : Caller::Agency(e.sender_agency());
}
}  // namespace

absl::Status Gate::AdmitEnvelope(const Caller& connection, absl::string_view method,
                                 absl::string_view envelope_bytes) const {
  absl::StatusOr<v1::Envelope> e = trust::ParseEnvelope(envelope_bytes, trust::EnvelopeLimits());
  if (!e.ok()) return e.status();
  const Caller signer = SignerOf(*e);
  // A payload type the table does not list is AdmitSigner's to refuse.
  const bool listed = table_->Find(method, e->payload_type()) != nullptr;
  if (listed && tls_ && (connection.kind != signer.kind || connection.id != signer.id)) {
    return Refuse(
        connection, method, "sender_not_caller",
        absl::PermissionDeniedError(absl::StrCat("the connection is ", connection.ForLog(),
                                                 " but the envelope is from ", signer.ForLog())));
  }
  return AdmitSigner(method, *e);
}

absl::Status Gate::AdmitSigner(absl::string_view method, const v1::Envelope& e) const {
  const Rule* rule = table_->Find(method, e.payload_type());
  const Caller signer = SignerOf(e);
  if (rule == nullptr) {
    return Refuse(signer, method, "payload_not_in_table",
                  absl::InvalidArgumentError(absl::StrCat("payload type ", e.payload_type(),
                                                          " is not accepted by ", table_->service(),
                                                          ".", method)));
  }
  // An unknown or suspended sender is the verifier's to answer (UNAUTHENTICATED,
  // PERMISSION_DENIED); here only the party.
  const uint32_t parties = PartiesOf(signer);
  if (signer.is_agency() && parties == 0) return absl::OkStatus();
  if ((parties & rule->parties) == 0) {
    return Refuse(signer, method, "party",
                  absl::PermissionDeniedError(absl::StrCat(e.payload_type(), " is for ",
                                                           PartyNames(rule->parties),
                                                           "; the sender is ", signer.ForLog())));
  }
  return absl::OkStatus();
}

}  // namespace careloop::policy
