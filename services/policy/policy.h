// Authorization: one policy, closed by default (DESIGN.md, "Authorization").
//
// Every service has one table, keyed by (RPC, signed payload type), naming
// who may make each call and which object-level rule its core applies. Both
// wirings pass through Gate::Admit before a core does anything: the gRPC
// adapters (services/*/..._grpc_service.cc) and in-process callers such as
// the agency edge. What the table does not list is refused. docs/SECURITY.md
// shows the tables (tests/unit/policy_test.cc keeps the two in step), and the
// access matrix (tests/integration/access_matrix_test.cc) is generated from
// the services' descriptors, so a new RPC without an entry fails.
//
// This library knows no gRPC: the edge maps a connection to a Caller
// (services/common/grpc_edge.h, CallerIdentity).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "careloop/v1/envelope.pb.h"
#include "services/directory/agencies.h"
#include "services/trust/envelope.h"

namespace careloop::policy {

// Who is calling, as the connection proves it (mTLS URI SAN; in dev mode on
// loopback, a header). The hub's own services, hub admins and agencies are
// distinct; an agency never becomes either of the others.
struct Caller {
  enum class Kind { kNone, kAgency, kHubService, kHubAdmin };
  Kind kind = Kind::kNone;
  std::string id;  // the agency id, or the hub admin's user id
  // An agency's staff member on whose behalf it calls (a directory user id;
  // "" when the agency's system does not say). Grants nothing: the table
  // and the object rules look at the agency. Reads of people's records
  // record it, so compliance can say who at the agency read what.
  std::string actor;

  static Caller None() { return {}; }
  static Caller Agency(std::string agency_id, std::string actor = "") {
    return {Kind::kAgency, std::move(agency_id), std::move(actor)};
  }
  static Caller HubService() { return {Kind::kHubService, "", ""}; }
  static Caller HubAdmin(std::string user) { return {Kind::kHubAdmin, std::move(user), ""}; }

  bool is_agency() const { return kind == Kind::kAgency; }
  // The reader a core sees: the agency id; "hub" for the hub's services and
  // admins (the table has already said which of their calls are allowed);
  // "" for nobody.
  std::string CoreId() const;
  // For logs: "agency:<id>", "admin:<user>", "hub", "none" (ids, never names).
  std::string ForLog() const;
};

// The parties a rule admits (bits).
enum Party : uint32_t {
  kAgency = 1u << 0,      // any active agency of the hub; the object rule narrows it
  kCompliance = 1u << 1,  // an active agency holding the agency role "compliance"
  kHubService = 1u << 2,  // the hub's own services (spiffe://careloop/hub)
  kHubAdmin = 1u << 3,    // a hub admin (spiffe://careloop/admin/<user>; signs as "hub")
};

// The agency role that makes an agency a compliance office.
inline constexpr char kComplianceRole[] = "compliance";

struct Rule {
  std::string method;        // "ConsentService.Submit"
  std::string payload_type;  // an envelope's payload type; "" for a call without one
  uint32_t parties = 0;      // Party bits
  // Envelopes: the roles the signing actor may hold (the directory says
  // which roles each actor has).
  std::set<std::string> actor_roles;
  // The object-level rule the core applies, in words for people.
  std::string object_rule;
};

class Table {
 public:
  Table(std::string service, std::vector<Rule> rules);
  const std::string& service() const { return service_; }
  const std::vector<Rule>& rules() const { return rules_; }
  // nullptr when the table does not list (method, payload type).
  const Rule* Find(absl::string_view method, absl::string_view payload_type) const;
  // The envelope checks of one envelope-carrying RPC: its payload types and
  // the actor roles for each, from this table; with `agencies`, also the
  // parties (Gate::AdmitSigner), so a core refuses a sender the table does
  // not name however it is called.
  trust::RpcPolicy Envelopes(absl::string_view method, absl::Duration max_skew,
                             const directory::Agencies* agencies = nullptr) const;

 private:
  std::string service_;
  std::vector<Rule> rules_;
};

// The tables, one per service (services/policy/tables.cc).
const Table& LedgerTable();
const Table& DirectoryTable();
const Table& ConsentTable();
const Table& ReferralTable();
const Table& NotificationTable();
const Table& AuditTable();
const std::vector<const Table*>& AllTables();
// The tables as docs/SECURITY.md shows them (between its policy markers).
std::string Markdown();

// The one entry point. Each service's reads admit their caller through a
// gate at the top of the core (or, for notification, the service's entry
// point), so every in-process caller meets the same table; the signed
// changes meet it when their envelope is verified (Table::Envelopes). The
// gRPC adapters only name the caller, and over mTLS check that an envelope's
// signer is the connection (AdmitEnvelope). Refusals are PERMISSION_DENIED
// (UNAUTHENTICATED when the caller has no identity), name nothing but the
// method and the caller's own id, and are logged as authz.refused (method,
// caller, reason code).
class Gate {
 public:
  // `agencies` may be null for the ledger's table (no agency is admitted).
  // `tls`: envelopes must come from the connection's own identity.
  Gate(const Table* table, const directory::Agencies* agencies, bool tls)
      : table_(table), agencies_(agencies), tls_(tls) {}

  // A call without an envelope.
  absl::Status Admit(const Caller& caller, absl::string_view method) const;
  // A call carrying a signed envelope: the party is the envelope's sender
  // ("hub" is a hub admin, the actor its user). With TLS the connection must
  // be that sender (an agency's certificate, or the admin's own); in dev mode
  // the signature, verified by the core, decides.
  absl::Status AdmitEnvelope(const Caller& connection, absl::string_view method,
                             absl::string_view envelope_bytes) const;
  // The signer's party alone, for a parsed envelope (what the cores check).
  absl::Status AdmitSigner(absl::string_view method, const v1::Envelope& e) const;

 private:
  uint32_t PartiesOf(const Caller& caller) const;
  absl::Status Refuse(const Caller& caller, absl::string_view method, absl::string_view code,
                      absl::Status status) const;
  const Table* table_;
  const directory::Agencies* agencies_;
  bool tls_;
};

}  // namespace careloop::policy
