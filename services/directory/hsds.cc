#include "services/directory/hsds.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "base/file.h"
#include "storage/validate.h"

namespace careloop::directory::hsds {
namespace {

using nlohmann::json;

constexpr char kSourcePrefix[] = "hsds:";

std::string Str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Arr(const json& j, const char* key) {
  static const json empty = json::array();
  if (!j.is_object()) return empty;
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : empty;
}

std::optional<int64_t> Int(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

const json& TermOf(const json& attribute) {
  static const json none;
  if (!attribute.is_object()) return none;
  auto it = attribute.find("taxonomy_term");
  return it != attribute.end() && it->is_object() ? *it : none;
}

// The careloop service codes a service's taxonomy terms name (by code or
// by name), in the order given.
std::vector<std::string> CodesOf(const json& service, const std::set<std::string>& codes) {
  std::vector<std::string> out;
  for (const json& a : Arr(service, "attributes")) {
    for (const char* key : {"code", "name"}) {
      const std::string v = absl::AsciiStrToLower(Str(TermOf(a), key));
      if (codes.contains(v) && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    }
  }
  return out;
}

// A CSV table (RFC 4180: quoted fields, "" inside quotes, CRLF or LF).
std::vector<std::vector<std::string>> ReadCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));
      row.clear();
    } else {
      field += c;
    }
  }
  if (!field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

// The rows of a table as column -> value, or why the file cannot be read.
struct Row {
  std::map<std::string, std::string> cells;  // by column name
  bool ragged = false;                       // not as many cells as the header
};
struct Table {
  std::vector<Row> rows;  // row i is line i + 2
  std::string error;
};

Table ReadTable(const std::string& path, const std::vector<std::string>& required) {
  Table t;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    t.error = "cannot be read";
    return t;
  }
  std::vector<std::vector<std::string>> rows = ReadCsv(*text);
  if (rows.empty()) {
    t.error = "has no header line";
    return t;
  }
  const std::vector<std::string>& header = rows[0];
  for (const std::string& col : required) {
    if (std::find(header.begin(), header.end(), col) == header.end()) {
      t.error = absl::StrCat("has no column '", col, "'");
      return t;
    }
  }
  for (size_t i = 1; i < rows.size(); ++i) {
    Row r;
    for (size_t c = 0; c < header.size() && c < rows[i].size(); ++c)
      r.cells[header[c]] = rows[i][c];
    r.ragged = rows[i].size() != header.size();
    t.rows.push_back(std::move(r));
  }
  return t;
}

// An organization as gathered from every file that mentions it.
struct Gathered {
  json organization = json::object();
  std::map<std::string, json> services;  // by service id
  std::string where;                     // where it was first seen
};

struct Reader {
  const std::set<std::string>& codes;
  Dataset out;
  std::map<std::string, Gathered> organizations;         // by HSDS organization id
  std::vector<std::pair<std::string, json>> capacities;  // (where, JSON capacity with service_id)

  void Report(std::string where, std::string why) {
    out.reported.push_back({std::move(where), std::move(why)});
  }

  void AddOrganization(const json& org, const std::string& where) {
    const std::string id = Str(org, "id");
    Gathered& g = organizations[id];
    if (g.where.empty()) g.where = where;
    for (const auto& [k, v] : org.items()) {
      if (k != "services") g.organization[k] = v;
    }
    for (const json& s : Arr(org, "services")) AddService(s, id, where);
  }

  void AddService(const json& service, const std::string& organization_id,
                  const std::string& where) {
    const std::string id = Str(service, "id");
    if (id.empty()) return Report(where, "a service without an id: not imported");
    organizations[organization_id].services[id] = service;
    for (const json& c : Arr(service, "capacities")) {
      json with = c;
      with["service_id"] = id;
      capacities.emplace_back(absl::StrCat(where, ": service ", id, " capacity ", Str(c, "id")),
                              std::move(with));
    }
  }

  // One record of a JSON file: an organization, or a service naming its own.
  void AddRecord(const json& r, const std::string& where) {
    if (!r.is_object()) return Report(where, "a record that is not a JSON object: not imported");
    const std::string id = Str(r, "id");
    if (r.contains("organization") && r["organization"].is_object()) {
      const json& org = r["organization"];
      if (Str(org, "id").empty()) {
        return Report(absl::StrCat(where, ": service ", id),
                      "its organization has no id: not imported");
      }
      AddOrganization(org, absl::StrCat(where, ": organization ", Str(org, "id")));
      return AddService(r, Str(org, "id"), where);
    }
    if (!Str(r, "organization_id").empty() && !r.contains("services")) {
      return AddService(r, Str(r, "organization_id"), where);
    }
    if (id.empty()) return Report(where, "an organization without an id: not imported");
    AddOrganization(r, absl::StrCat(where, ": organization ", id));
  }

  void ReadJsonFile(const std::filesystem::path& path) {
    const std::string name = path.filename().string();
    absl::StatusOr<std::string> text = ReadFile(path.string());
    if (!text.ok()) return Report(name, "cannot be read: nothing of it imported");
    const json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Report(name, "is not JSON: nothing of it imported");
    const json* records = &j;
    if (j.is_object() && j.contains("contents") && j["contents"].is_array())
      records = &j["contents"];
    if (records->is_array()) {
      for (size_t i = 0; i < records->size(); ++i)
        AddRecord((*records)[i], absl::StrCat(name, " [", i, "]"));
    } else {
      AddRecord(*records, name);
    }
  }

  std::vector<std::string> ServiceCodes(const json& service, const std::string& where) {
    std::vector<std::string> found = CodesOf(service, codes);
    if (found.empty()) {
      std::vector<std::string> terms;
      for (const json& a : Arr(service, "attributes")) {
        const json term = TermOf(a);
        if (!Str(term, "code").empty())
          terms.push_back(absl::StrCat(Str(term, "taxonomy"), "/", Str(term, "code")));
      }
      Report(where, absl::StrCat("no taxonomy term (",
                                 terms.empty() ? "none given" : absl::StrJoin(terms, ", "),
                                 ") is a careloop service code: listed without a service"));
    }
    return found;
  }

  v1::PostalAddress AddressOf(const json& org) {
    v1::PostalAddress out;
    const json* chosen = nullptr;
    for (const json& loc : Arr(org, "locations")) {
      for (const json& a : Arr(loc, "addresses")) {
        const bool physical =
            Str(a, "address_type") == "physical" || Str(loc, "location_type") == "physical";
        if (chosen == nullptr || (physical && Str(a, "address_type") == "physical")) chosen = &a;
      }
    }
    if (chosen == nullptr) return out;
    for (const char* line : {"address_1", "address_2"}) {
      if (!Str(*chosen, line).empty()) out.add_lines(Str(*chosen, line));
    }
    out.set_city(Str(*chosen, "city"));
    out.set_state(Str(*chosen, "state_province"));
    out.set_postal_code(Str(*chosen, "postal_code"));
    out.set_country(Str(*chosen, "country"));
    return out;
  }

  static std::string PhoneOf(const json& phones) {
    for (const json& p : phones) {
      std::string n = Str(p, "number");
      // Some published data quotes the number inside the string.
      absl::string_view v = absl::StripAsciiWhitespace(n);
      if (absl::ConsumePrefix(&v, "\"")) absl::ConsumeSuffix(&v, "\"");
      if (!v.empty()) return std::string(v);
    }
    return "";
  }

  void MapOrganization(const std::string& id, const Gathered& g) {
    const std::string where = g.where;
    const std::string agency = AgencyIdOf(id);
    if (!storage::ValidateAgencyId(agency).ok()) {
      return Report(where, "its id cannot be an agency id ([a-z0-9.-], 1 to 123): not imported");
    }
    const json& org = g.organization;
    if (Str(org, "name").empty()) return Report(where, "it has no name: not imported");
    v1::AgencyProfile p;
    p.set_display_name(Str(org, "name"));
    p.set_kind(v1::COMMUNITY_AGENCY);
    p.set_source(absl::StrCat(kSourcePrefix, id));
    p.add_roles("receiver");
    *p.mutable_address() = AddressOf(org);
    p.mutable_contact()->set_phone(PhoneOf(Arr(org, "phones")));
    p.mutable_contact()->set_email(Str(org, "email"));
    p.mutable_contact()->set_url(Str(org, "website"));
    std::set<std::string> services, languages;
    std::optional<int64_t> min_age, max_age;
    for (const json& loc : Arr(org, "locations")) {
      for (const json& l : Arr(loc, "languages")) {
        if (!Str(l, "code").empty()) languages.insert(absl::AsciiStrToLower(Str(l, "code")));
      }
    }
    for (const auto& [sid, s] : g.services) {
      const std::string swhere = absl::StrCat(where, " service ", sid);
      const std::string status = Str(s, "status");
      if (!status.empty() && status != "active") {
        Report(swhere, absl::StrCat("status '", status, "': not offered"));
        continue;
      }
      for (std::string& c : ServiceCodes(s, swhere)) services.insert(std::move(c));
      for (const json& l : Arr(s, "languages")) {
        if (!Str(l, "code").empty()) languages.insert(absl::AsciiStrToLower(Str(l, "code")));
      }
      if (auto a = Int(s, "minimum_age"); a && *a >= 0)
        min_age = std::min(min_age.value_or(*a), *a);
      if (auto a = Int(s, "maximum_age"); a && *a > 0) max_age = std::max(max_age.value_or(*a), *a);
      if (!Arr(s, "service_areas").empty()) {
        Report(swhere,
               "its service area is described, not given as postal codes or counties: set the "
               "agency's area when onboarding it");
      }
    }
    for (const std::string& s : services) p.add_services(s);
    for (const std::string& l : languages) p.add_languages(l);
    if (min_age) p.mutable_eligibility()->set_min_age(static_cast<uint32_t>(*min_age));
    if (max_age) p.mutable_eligibility()->set_max_age(static_cast<uint32_t>(*max_age));
    out.agencies.push_back({agency, std::move(p)});
  }
};

// The units that count places a referral can take.
bool CountsPlaces(const std::string& name, const std::string& identifier) {
  static const std::set<std::string> kCounts = {
      "bed",        "beds",        "place",        "places",   "slot",      "slots",   "seat",
      "seats",      "space",       "spaces",       "person",   "people",    "persons", "household",
      "households", "appointment", "appointments", "referral", "referrals", "c62",     "each"};
  return kCounts.contains(absl::AsciiStrToLower(identifier)) ||
         kCounts.contains(absl::AsciiStrToLower(name));
}

// Where a service's capacity goes: its agency and its one careloop code.
struct ServiceTarget {
  std::string agency_id;
  std::vector<std::string> codes;
};

// One capacity record that passed its checks.
struct CapacityRow {
  std::string agency_id, service, id;
  int64_t available = 0;
  std::string where;
};

void MapCapacity(const std::string& where, const std::string& id, const std::string& service_id,
                 const std::optional<int64_t>& available, const std::optional<int64_t>& maximum,
                 const json& unit, const std::map<std::string, ServiceTarget>& services,
                 Dataset& out, std::vector<CapacityRow>& rows) {
  std::vector<std::string> why;
  if (!available || *available < 0) why.push_back("available is not a count (0 or more)");
  if (available && maximum && *available > *maximum)
    why.push_back(absl::StrCat("available ", *available, " is more than maximum ", *maximum));
  if (unit.is_null()) {
    why.push_back("no unit");
  } else if (!CountsPlaces(Str(unit, "name"), Str(unit, "identifier"))) {
    why.push_back(absl::StrCat("unit '", Str(unit, "name"), "' (", Str(unit, "identifier"),
                               ") does not count places"));
  }
  if (!unit.is_null() && !id.empty() && Str(unit, "id") == id)
    why.push_back("its unit's id is the capacity's own id");
  auto s = services.find(service_id);
  if (s == services.end()) {
    why.push_back(absl::StrCat("service_id ", service_id, " is not a service of this import"));
  } else if (s->second.codes.size() != 1) {
    why.push_back(s->second.codes.empty() ? "its service has no careloop service code"
                                          : "its service has several careloop service codes");
  }
  if (!why.empty()) {
    out.reported.push_back({where, absl::StrCat(absl::StrJoin(why, "; "), ": not applied")});
    return;
  }
  rows.push_back({s->second.agency_id, s->second.codes[0], id, *available, where});
}

// Sums the consistent rows per agency and service (module comment in hsds.h).
void SumCapacity(const std::vector<CapacityRow>& rows, Dataset& out) {
  struct Sum {
    std::map<std::string, int64_t> by_id;  // a row without an id is its own
    std::vector<std::string> where;
    bool conflict = false;
  };
  std::map<std::pair<std::string, std::string>, Sum> sums;
  for (size_t i = 0; i < rows.size(); ++i) {
    const CapacityRow& r = rows[i];
    Sum& sum = sums[{r.agency_id, r.service}];
    sum.where.push_back(r.where);
    const std::string key = r.id.empty() ? absl::StrCat("\n", i) : r.id;
    auto [it, fresh] = sum.by_id.emplace(key, r.available);
    if (!fresh && it->second != r.available) sum.conflict = true;
  }
  for (auto& [key, sum] : sums) {
    const std::string where = absl::StrJoin(sum.where, ", ");
    if (sum.conflict) {
      out.reported.push_back(
          {where, absl::StrCat("the same capacity record gives two different numbers: ", key.second,
                               " capacity of ", key.first, " not applied")});
      continue;
    }
    int64_t total = 0;
    for (const auto& [id, n] : sum.by_id) total += n;
    out.capacity.push_back({key.first, key.second,
                            static_cast<uint32_t>(std::min<int64_t>(total, UINT32_MAX)), where});
  }
}

std::optional<int64_t> IntOf(const std::string& v) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n)) return std::nullopt;
  return n;
}

void ReadCapacityTables(const std::filesystem::path& dir,
                        const std::map<std::string, ServiceTarget>& services, Dataset& out,
                        std::vector<CapacityRow>& capacity_rows) {
  const std::filesystem::path capacity = dir / "service_capacity.csv";
  if (!std::filesystem::exists(capacity)) return;
  Table caps = ReadTable(capacity.string(), {"id", "service_id", "unit_id", "available"});
  if (!caps.error.empty()) {
    out.reported.push_back(
        {"service_capacity.csv", absl::StrCat(caps.error, ": nothing of it imported")});
    return;
  }
  std::map<std::string, json> units;
  const std::filesystem::path units_path = dir / "units.csv";
  if (std::filesystem::exists(units_path)) {
    Table t = ReadTable(units_path.string(), {"id", "name"});
    if (!t.error.empty()) {
      out.reported.push_back({"units.csv", absl::StrCat(t.error, ": nothing of it imported")});
    } else {
      for (Row& r : t.rows) units[r.cells["id"]] = json(r.cells);
    }
  }
  for (size_t i = 0; i < caps.rows.size(); ++i) {
    std::map<std::string, std::string>& r = caps.rows[i].cells;
    const std::string where = absl::StrCat("service_capacity.csv line ", i + 2, " (", r["id"], ")");
    if (caps.rows[i].ragged) {
      out.reported.push_back({where, "its column count differs from the header's: not applied"});
      continue;
    }
    auto unit = units.find(r["unit_id"]);
    if (unit == units.end()) {
      out.reported.push_back(
          {where, absl::StrCat("unit_id ", r["unit_id"], " is not in units.csv: not applied")});
      continue;
    }
    const std::optional<int64_t> maximum =
        r["maximum"].empty() ? std::nullopt : IntOf(r["maximum"]);
    MapCapacity(where, r["id"], r["service_id"], IntOf(r["available"]), maximum, unit->second,
                services, out, capacity_rows);
  }
}

bool Same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

std::string AgencyIdOf(const std::string& organization_id) {
  return absl::StrCat("hsds.", absl::AsciiStrToLower(organization_id));
}

absl::StatusOr<Dataset> ReadDataset(const std::string& dir,
                                    const std::set<std::string>& service_codes) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".json" &&
        !absl::EndsWith(e.path().filename().string(), ".schema.json")) {
      files.push_back(e.path());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  Reader reader{service_codes, {}, {}, {}};
  for (const auto& f : files) reader.ReadJsonFile(f);
  for (const auto& [id, g] : reader.organizations) reader.MapOrganization(id, g);

  std::map<std::string, ServiceTarget> services;
  for (const auto& [org_id, g] : reader.organizations) {
    const std::string agency = AgencyIdOf(org_id);
    for (const auto& [sid, s] : g.services) {
      services[sid] = ServiceTarget{agency, CodesOf(s, service_codes)};
    }
  }
  std::vector<CapacityRow> capacity_rows;
  for (const auto& [where, c] : reader.capacities) {
    const json unit = c.contains("unit") && c["unit"].is_object() ? c["unit"] : json();
    MapCapacity(where, Str(c, "id"), Str(c, "service_id"), Int(c, "available"), Int(c, "maximum"),
                unit, services, reader.out, capacity_rows);
  }
  ReadCapacityTables(dir, services, reader.out, capacity_rows);
  SumCapacity(capacity_rows, reader.out);
  std::sort(
      reader.out.agencies.begin(), reader.out.agencies.end(),
      [](const ImportedAgency& a, const ImportedAgency& b) { return a.agency_id < b.agency_id; });
  return std::move(reader.out);
}

Plan PlanImport(const Dataset& data,
                const std::function<std::optional<v1::AgencyRecord>(const std::string&)>& current) {
  Plan plan;
  plan.reported = data.reported;
  std::set<std::string> planned;
  for (const ImportedAgency& a : data.agencies) {
    std::optional<v1::AgencyRecord> now = current(a.agency_id);
    AgencyStep step{Change::kRegister, a.agency_id, a.profile};
    if (now.has_value()) {
      if (now->profile().source() != a.profile.source()) {
        plan.reported.push_back(
            {a.agency_id,
             "an agency of that id exists and was not imported from HSDS: left alone"});
        continue;
      }
      // What HSDS gives replaces; roles, area and a confidential flag stay.
      v1::AgencyProfile next = now->profile();
      next.set_display_name(a.profile.display_name());
      const bool confidential = next.address().confidential();
      *next.mutable_address() = a.profile.address();
      next.mutable_address()->set_confidential(confidential);
      *next.mutable_contact() = a.profile.contact();
      *next.mutable_services() = a.profile.services();
      *next.mutable_languages() = a.profile.languages();
      if (a.profile.has_eligibility()) {
        next.mutable_eligibility()->set_min_age(a.profile.eligibility().min_age());
        next.mutable_eligibility()->set_max_age(a.profile.eligibility().max_age());
      }
      step.change = Same(next, now->profile()) ? Change::kUnchanged : Change::kUpdate;
      step.profile = std::move(next);
    }
    planned.insert(a.agency_id);
    plan.agencies.push_back(std::move(step));
  }
  for (const ImportedCapacity& c : data.capacity) {
    if (!planned.contains(c.agency_id)) continue;
    std::optional<v1::AgencyRecord> now = current(c.agency_id);
    bool same = false;
    if (now.has_value()) {
      for (const v1::CapacityEntry& e : now->capacity())
        same = same || (e.service() == c.service && e.open_slots() == c.open_slots);
    }
    if (!same) plan.capacity.push_back(c);
  }
  return plan;
}

}  // namespace careloop::directory::hsds
