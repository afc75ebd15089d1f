// careloop directory import --hsds DIR: an Open Referral (HSDS) dataset
// into the directory, signed by the hub admin (services/directory/hsds.h).
// Every agency it names is read first, so nothing is signed when the hub
// cannot be read; then only what changes is signed, agencies before their
// capacity. A second import of the same data signs nothing.
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "services/directory/agencies.h"
#include "services/directory/hsds.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

namespace hsds = directory::hsds;

struct ImportOpts {
  std::string dir;
  std::vector<std::string> extra_codes;
  bool dry_run = false;
  Signer signer;
};

// The directory as it is for every agency the dataset names.
absl::StatusOr<std::map<std::string, std::optional<v1::AgencyRecord>>> ReadCurrent(
    const Globals& g, const hsds::Dataset& data) {
  std::map<std::string, std::optional<v1::AgencyRecord>> out;
  auto stub = v1::DirectoryService::NewStub(Connect(g));
  for (const hsds::ImportedAgency& a : data.agencies) {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::GetAgencyRequest req;
    req.set_agency_id(a.agency_id);
    v1::AgencyRecord r;
    grpc::Status st = stub->GetAgency(&ctx, req, &r);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      out[a.agency_id] = std::nullopt;
    } else if (!st.ok()) {
      return FromGrpcStatus(st);
    } else {
      out[a.agency_id] = std::move(r);
    }
  }
  return out;
}

absl::Status SignAndSubmit(const Globals& g, const google::protobuf::Message& payload,
                           const Signer& s) {
  absl::StatusOr<std::string> envelope = Sign(payload, s);
  if (!envelope.ok()) return envelope.status();
  grpc::ClientContext ctx;
  Prepare(g, &ctx);
  v1::SubmitEnvelopeRequest req;
  req.set_envelope(*envelope);
  v1::SubmitEnvelopeResponse resp;
  return FromGrpcStatus(v1::DirectoryService::NewStub(Connect(g))->Submit(&ctx, req, &resp));
}

const char* ChangeName(hsds::Change c) {
  switch (c) {
    case hsds::Change::kRegister:
      return "register";
    case hsds::Change::kUpdate:
      return "update";
    case hsds::Change::kUnchanged:
      return "unchanged";
  }
  return "?";
}

void PrintPlan(const Globals& g, const hsds::Plan& plan, const std::string& applied) {
  if (g.json) {
    nlohmann::json j{{"agencies", nlohmann::json::array()},
                     {"capacity", nlohmann::json::array()},
                     {"reported", nlohmann::json::array()},
                     {"applied", applied == "applied"}};
    for (const auto& a : plan.agencies)
      j["agencies"].push_back({{"agency_id", a.agency_id}, {"change", ChangeName(a.change)}});
    for (const auto& c : plan.capacity) {
      j["capacity"].push_back(
          {{"agency_id", c.agency_id}, {"service", c.service}, {"open_slots", c.open_slots}});
    }
    for (const auto& r : plan.reported)
      j["reported"].push_back({{"where", r.where}, {"why", r.why}});
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::map<hsds::Change, int> counts;
  for (const auto& a : plan.agencies) {
    ++counts[a.change];
    std::cout << ChangeName(a.change) << "  " << a.agency_id << "  " << a.profile.display_name()
              << "\n";
  }
  for (const auto& c : plan.capacity)
    std::cout << "capacity  " << c.agency_id << "  " << c.service << "=" << c.open_slots << "\n";
  for (const auto& r : plan.reported) std::cout << "reported  " << r.where << ": " << r.why << "\n";
  std::cout << applied << ": " << counts[hsds::Change::kRegister] << " registered, "
            << counts[hsds::Change::kUpdate] << " updated, " << counts[hsds::Change::kUnchanged]
            << " unchanged, " << plan.capacity.size() << " capacity reports; "
            << plan.reported.size() << " rows reported, not applied\n";
}

void RunImport(Globals& g, const ImportOpts& o) {
  std::set<std::string> codes = directory::DefaultServiceCodes();
  codes.insert(o.extra_codes.begin(), o.extra_codes.end());
  absl::StatusOr<hsds::Dataset> data = hsds::ReadDataset(o.dir, codes);
  if (!data.ok()) {
    g.exit_code = FailUsage(std::string(data.status().message()));
    return;
  }
  auto current = ReadCurrent(g, *data);
  if (!current.ok()) {
    g.exit_code = Fail(current.status());
    return;
  }
  const hsds::Plan plan =
      hsds::PlanImport(*data, [&](const std::string& id) { return current->at(id); });
  if (o.dry_run) return PrintPlan(g, plan, "planned (dry run)");
  size_t done = 0;
  const size_t total = plan.agencies.size() + plan.capacity.size();
  auto failed = [&](const std::string& what, const absl::Status& s) {
    std::cerr << "stopped at " << what << " after " << done << " of " << total
              << " changes; the import is idempotent: run it again to apply the rest\n";
    g.exit_code = Fail(s);
  };
  for (const hsds::AgencyStep& a : plan.agencies) {
    absl::Status s = absl::OkStatus();
    if (a.change == hsds::Change::kRegister) {
      v1::RegisterAgency p;  // no key, no actors: listed, not onboarded
      p.set_agency_id(a.agency_id);
      *p.mutable_profile() = a.profile;
      s = SignAndSubmit(g, p, o.signer);
    } else if (a.change == hsds::Change::kUpdate) {
      v1::UpdateAgencyProfile p;
      p.set_agency_id(a.agency_id);
      *p.mutable_profile() = a.profile;
      s = SignAndSubmit(g, p, o.signer);
    }
    if (!s.ok()) return failed(a.agency_id, s);
    if (a.change != hsds::Change::kUnchanged) ++done;
  }
  for (const hsds::ImportedCapacity& c : plan.capacity) {
    v1::ReportCapacity p;
    p.set_agency_id(c.agency_id);
    p.set_service(c.service);
    p.set_open_slots(c.open_slots);
    if (absl::Status s = SignAndSubmit(g, p, o.signer); !s.ok()) return failed(c.where, s);
    ++done;
  }
  PrintPlan(g, plan, "applied");
}

}  // namespace

void AddHsdsCommands(CLI::App& app, Globals& g) {
  CLI::App* directory = app.add_subcommand("directory", "the directory as a whole");
  directory->require_subcommand(1);
  auto o = std::make_shared<ImportOpts>();
  CLI::App* imp = directory->add_subcommand(
      "import",
      "import an Open Referral (HSDS 3.0) dataset: organizations are listed, not onboarded "
      "(hub admin)");
  imp->add_option("--hsds", o->dir,
                  "folder of HSDS JSON (organizations, services) and optional "
                  "service_capacity.csv / units.csv")
      ->required();
  imp->add_option("--service-code", o->extra_codes,
                  "a service code the hub's configuration adds (repeatable)");
  imp->add_flag("--dry-run", o->dry_run, "print what would change; sign nothing");
  AddSignFlags(imp, o->signer, g);
  imp->callback([&g, o] { RunImport(g, *o); });
}

}  // namespace careloop::cli
