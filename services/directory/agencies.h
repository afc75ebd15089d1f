// What the other services need of the directory, and nothing more: agencies
// as they are now (a projection of the ledger's agency/ and capacity/
// streams), the hub admin's key, and the vocabulary of services and slots.
// Consent, referrals, delivery and audit depend on this interface, not on
// the directory's core or its adapter.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "careloop/v1/directory.pb.h"
#include "services/names/names.h"
#include "services/trust/envelope.h"

namespace careloop::directory {

using names::kAgencyAdminRole;
using names::kHubAdminRole;
using names::kHubAgency;

struct HubAdmin {
  std::string key_id = "hub-admin-1";
  std::string public_key;                       // raw Ed25519
  std::set<std::string> users = {"hub-admin"};  // user ids allowed to act as hub admin
};

// Whether an agency may use identifiers of an authority, and whether the
// authority is shared (then holding it is not by itself a relationship to a
// person).
struct AuthorityUse {
  bool holds = false;
  bool shared = false;
};

// Agencies, actors and keys: as the envelope verifier sees them
// (EnvelopeDirectory), and as records. Thread-safe.
class Agencies : public trust::EnvelopeDirectory {
 public:
  ~Agencies() override = default;
  virtual std::optional<v1::AgencyRecord> Get(absl::string_view agency_id) const = 0;
  // Every agency, by id.
  virtual std::vector<v1::AgencyRecord> All() const = 0;
  virtual const HubAdmin& admin() const = 0;
  // An authority "<agency id>/<name>" is that agency's own; any other only
  // the holders its SetIdentifierAuthority record names.
  virtual AuthorityUse Authority(absl::string_view agency_id,
                                 absl::string_view authority) const = 0;
};

// Onboarded: the agency holds a key that is not revoked and an active actor,
// so someone there can sign for it. An agency listed from an import is not,
// until the hub admin adds both; referrals never go to it before.
bool Onboarded(const v1::AgencyRecord& agency);

// Open slots now: the last report minus the referrals accepted since.
int64_t OpenSlots(const v1::CapacityEntry& c);

// The service codes agencies may offer: the HL7 SDOH Clinical Care IG
// categories and careloop's own, plus any the configuration adds.
const std::set<std::string>& DefaultServiceCodes();

}  // namespace careloop::directory
