// Open Referral HSDS (Human Services Data Specification) into the directory:
// organizations and their services from HSDS 3.0 JSON, capacity from the
// 3.1-dev service_capacity and unit records (JSON or CSV tables).
//
// Pure: a dataset read from a folder, then planned against the directory as
// it is, so `careloop directory import --hsds DIR` signs only what changes
// and a second import of the same data changes nothing. What cannot be
// mapped is reported by file and row, never guessed; a file that cannot be
// read as a whole contributes nothing.
//
// The mapping (docs/OPERATIONS.md, "Importing an Open Referral directory"):
//   organization id        -> agency id "hsds.<id>" and profile.source "hsds:<id>"
//   name, email, website   -> display name, contact
//   first phone            -> contact phone
//   a physical location's address (else its first) -> address
//   active services' taxonomy terms whose code or name is a careloop
//     service code         -> services (others reported)
//   languages (services, locations) -> languages
//   minimum_age/maximum_age over the services -> eligibility ages
//   kind community-agency, role receiver; no key, no actors: listed, not
//   onboarded, never routed to until the hub admin adds a key and an actor.
//   a capacity whose unit counts places and whose available is within its
//   maximum -> the agency's open slots for the service's code.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "careloop/v1/directory.pb.h"

namespace careloop::directory::hsds {

// One thing not applied, and why: `where` names the file and the row (a
// record id or a CSV line), never anything of a person.
struct Reported {
  std::string where;
  std::string why;
};

struct ImportedAgency {
  std::string agency_id;
  v1::AgencyProfile profile;
};

// An agency's open places for one service: the sum of the available
// places of every distinct capacity record of its services with that code
// (a record in the JSON and in service_capacity.csv under the same id
// counts once; given twice with different numbers, the service's capacity
// is reported and not applied).
struct ImportedCapacity {
  std::string agency_id;
  std::string service;  // careloop service code
  uint32_t open_slots = 0;
  std::string where;  // the records it sums
};

struct Dataset {
  std::vector<ImportedAgency> agencies;  // by agency id
  std::vector<ImportedCapacity> capacity;
  std::vector<Reported> reported;
};

// "hsds.<organization id>" in lower case: the same organization always maps
// to the same agency.
std::string AgencyIdOf(const std::string& organization_id);

// Reads every *.json (an organization, a service, a list of them, or an
// HSDS API page {"contents": [...]}) and the tables service_capacity.csv and
// units.csv of `dir`. Fails only when `dir` cannot be listed.
absl::StatusOr<Dataset> ReadDataset(const std::string& dir,
                                    const std::set<std::string>& service_codes);

enum class Change { kRegister, kUpdate, kUnchanged };

struct AgencyStep {
  Change change = Change::kUnchanged;
  std::string agency_id;
  v1::AgencyProfile profile;  // what the directory will hold
};

struct Plan {
  std::vector<AgencyStep> agencies;
  std::vector<ImportedCapacity> capacity;  // only reports that change something
  std::vector<Reported> reported;          // the dataset's, and the plan's own
};

// What to sign, against the directory as `current` answers for an agency
// id. An agency that exists but was not imported from HSDS is reported and
// left alone. On an existing agency the import replaces what HSDS gives and
// keeps what it does not (roles, area, eligibility the agency set), so an
// onboarded agency's own care survives a re-import.
Plan PlanImport(const Dataset& data,
                const std::function<std::optional<v1::AgencyRecord>(const std::string&)>& current);

}  // namespace careloop::directory::hsds
