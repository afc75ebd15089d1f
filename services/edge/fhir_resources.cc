#include "services/edge/fhir_resources.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_consent.h"
#include "services/edge/fhir_json.h"
#include "services/names/names.h"
#include "services/referral/lifecycle.h"

namespace careloop::edge::fhir {
namespace {

constexpr char kOldSdohTemporaryCodes[] =
    "http://hl7.org/fhir/us/sdoh-cc/CodeSystem/sdohcc-temporary-codes";
constexpr char kIdentifierTypes[] = "http://terminology.hl7.org/CodeSystem/v2-0203";
constexpr char kUsCoreCategory[] = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category";

// The directory user a reference names: by identifier (a logical
// reference), or a Practitioner or PractitionerRole of the Bundle carrying
// one (a role's practitioner too).
std::string UserOf(const json& reference, const Entries& entries, int depth = 0) {
  if (!reference.is_object() || depth > 2) return "";
  if (std::string v = IdentifierValue(Member(reference, "identifier"), kUserSystem); !v.empty())
    return v;
  const json* r = entries.Resolve(reference);
  if (r == nullptr) return "";
  if (std::string v = IdentifierValue(Member(*r, "identifier"), kUserSystem); !v.empty()) return v;
  if (Str(*r, "resourceType") == "PractitionerRole")
    return UserOf(Member(*r, "practitioner"), entries, depth + 1);
  return "";
}

// The sending agency's record number of the person.
std::string RecordNumber(const json& patient, const std::string& agency) {
  const json& ids = Member(patient, "identifier");
  if (std::string v = IdentifierValue(ids, absl::StrCat(kIdentifierSystemPrefix, agency, "/mrn"));
      !v.empty()) {
    return v;
  }
  if (!ids.is_array()) return "";
  for (const json& id : ids) {
    if (HasCoding(Member(id, "type"), kIdentifierTypes, "MR")) return Str(id, "value");
  }
  return "";
}

// The directory service a ServiceRequest asks for: careloop's service
// code, or an SDOH domain ("food-insecurity-domain" is food-insecurity).
std::string ServiceOf(const json& sr) {
  for (const json& concepts : {Member(sr, "category"), Member(sr, "code")}) {
    for (const json* c : Codings(concepts)) {
      const std::string system = Str(*c, "system");
      std::string code = Str(*c, "code");
      if (system == kServiceSystem) return code;
      if (system == kSdohTemporaryCodes || system == kOldSdohTemporaryCodes) {
        absl::string_view v = code;
        absl::ConsumeSuffix(&v, "-domain");
        return std::string(v);
      }
    }
  }
  return "";
}

// A Condition, Goal or Observation about social needs (an SDOH category or
// domain), or clinical otherwise.
std::string CategoryOfSupport(const json& r) {
  for (const json* c : Codings(Member(r, "category"))) {
    const std::string system = Str(*c, "system");
    if (system == kSdohTemporaryCodes || system == kOldSdohTemporaryCodes ||
        (system == kUsCoreCategory && Str(*c, "code") == "sdoh")) {
      return "social-needs";
    }
  }
  return "clinical";
}

// The parts of a Patient by data category.
json PatientPart(const json& patient, std::initializer_list<const char*> keys) {
  json out{{"resourceType", "Patient"}};
  if (!Str(patient, "id").empty()) out["id"] = Str(patient, "id");
  bool any = false;
  for (const char* k : keys) {
    if (patient.contains(k)) {
      out[k] = patient[k];
      any = true;
    }
  }
  return any ? out : json();
}

absl::StatusOr<v1::ReferralPriority> PriorityOf(const json& sr) {
  const std::string p = Str(sr, "priority");
  if (p.empty() || p == "routine") return v1::ROUTINE;
  if (p == "urgent") return v1::URGENT;
  if (p == "asap") return v1::ASAP;
  if (p == "stat") return v1::STAT;
  return Invalid("ServiceRequest.priority", "priority is routine, urgent, asap or stat");
}

absl::Status CheckTask(const json& task, const Entries& entries, const json& sr,
                       const json& patient) {
  if (Str(task, "status") != "requested") {
    return Unprocessable("Task.status",
                         absl::StrCat("a new referral's Task has status 'requested', not '",
                                      Str(task, "status"), "'"));
  }
  if (Str(task, "intent") != "order")
    return Unprocessable("Task.intent", "a referral's Task has intent 'order'");
  if (!HasCoding(Member(task, "code"), kTaskCodeSystem, "fulfill"))
    return Unprocessable("Task.code", "a referral's Task has code 'fulfill' (task-code)");
  if (entries.Resolve(Member(task, "focus")) != &sr)
    return Unprocessable("Task.focus", "the Task's focus is the Bundle's ServiceRequest");
  if (entries.Resolve(Member(task, "for")) != &patient)
    return Unprocessable("Task.for", "the Task is for the Bundle's Patient");
  return absl::OkStatus();
}

absl::Status CheckServiceRequest(const json& sr, const Entries& entries, const json& patient) {
  if (Str(sr, "status") != "active")
    return Unprocessable("ServiceRequest.status", "the ServiceRequest is 'active'");
  if (Str(sr, "intent") != "order")
    return Unprocessable("ServiceRequest.intent", "the ServiceRequest's intent is 'order'");
  if (sr.contains("subject") && entries.Resolve(Member(sr, "subject")) != &patient)
    return Unprocessable("ServiceRequest.subject",
                         "the ServiceRequest is about the Bundle's Patient");
  return absl::OkStatus();
}

// The sections of the referral, by data category.
absl::StatusOr<std::vector<SectionInput>> SectionsOfBundle(const json& entries_json, const json& sr,
                                                           const json& patient) {
  std::vector<SectionInput> out;
  auto add = [&out](std::string id, std::string category, const json& r) {
    out.push_back(
        SectionInput{std::move(id), std::move(category), r.dump(), "application/fhir+json"});
  };
  if (json d = PatientPart(patient, {"identifier", "name", "gender", "birthDate", "communication"});
      !d.is_null()) {
    add("patient-demographics", "demographics", d);
  }
  if (json c = PatientPart(patient, {"telecom", "address"}); !c.is_null()) {
    add("patient-contact", "contact", c);
  }
  add("service-request", "social-needs", sr);
  std::map<std::string, int> counts;
  for (const json& e : entries_json) {
    const json& r = Member(e, "resource");
    const std::string type = Str(r, "resourceType");
    if (type != "Condition" && type != "Goal" && type != "Observation") continue;
    add(absl::StrCat(absl::AsciiStrToLower(type), "-", ++counts[type]), CategoryOfSupport(r), r);
  }
  return out;
}

}  // namespace

absl::StatusOr<IncomingReferral> ReadReferralBundle(const json& bundle, const std::string& agency) {
  if (!bundle.is_object() || Str(bundle, "resourceType") != "Bundle")
    return Invalid("Bundle", "POST a Bundle of type transaction");
  if (Str(bundle, "type") != "transaction")
    return Invalid("Bundle.type", "the Bundle's type is 'transaction'");
  const json& entries_json = Member(bundle, "entry");
  if (!entries_json.is_array() || entries_json.empty())
    return Invalid("Bundle.entry", "the Bundle has entries");
  static const std::set<std::string> kAccepted = {
      "Task",       "ServiceRequest", "Patient",      "Condition",
      "Goal",       "Observation",    "Practitioner", "PractitionerRole",
      "Provenance", "Consent",        "Organization", "RelatedPerson"};
  IncomingReferral in;
  std::map<std::string, std::vector<size_t>> by_type;
  for (size_t i = 0; i < entries_json.size(); ++i) {
    const json& e = entries_json[i];
    const std::string at = absl::StrCat("Bundle.entry[", i, "]");
    const json& r = Member(e, "resource");
    if (!r.is_object() || Str(r, "resourceType").empty())
      return Invalid(absl::StrCat(at, ".resource"), "each entry holds a resource");
    const std::string type = Str(r, "resourceType");
    if (!kAccepted.contains(type)) {
      return Unprocessable(absl::StrCat(at, ".resource"),
                           absl::StrCat("a referral transaction does not take ", type));
    }
    if (Str(Member(e, "request"), "method") != "POST")
      return Invalid(absl::StrCat(at, ".request.method"), "each entry is created (POST)");
    in.entry_types.push_back(type);
    by_type[type].push_back(i);
  }
  for (const char* type : {"Task", "ServiceRequest", "Patient"}) {
    if (by_type[type].size() != 1) {
      return Unprocessable("Bundle.entry",
                           absl::StrCat("a referral transaction holds exactly one ", type));
    }
  }
  in.task_entry = by_type["Task"][0];
  in.service_request_entry = by_type["ServiceRequest"][0];
  const json& task = entries_json[in.task_entry]["resource"];
  const json& sr = entries_json[in.service_request_entry]["resource"];
  const json& patient = entries_json[by_type["Patient"][0]]["resource"];
  const Entries entries(entries_json);
  RETURN_IF_ERROR(CheckTask(task, entries, sr, patient));
  RETURN_IF_ERROR(CheckServiceRequest(sr, entries, patient));

  NewReferral& r = in.referral;
  r.mrn = RecordNumber(patient, agency);
  if (r.mrn.empty()) {
    return Unprocessable("Patient.identifier",
                         absl::StrCat("the Patient carries the sending agency's record number "
                                      "(an identifier of type MR, or of system ",
                                      kIdentifierSystemPrefix, agency, "/mrn)"));
  }
  r.service = ServiceOf(sr);
  if (r.service.empty()) {
    return Unprocessable("ServiceRequest.category",
                         "the ServiceRequest names a service: an SDOH domain category or a "
                         "careloop service code (urn:careloop:service)");
  }
  ASSIGN_OR_RETURN(r.priority, PriorityOf(sr));
  if (std::vector<const json*> code = Codings(Member(sr, "code")); !code.empty())
    r.reason = Str(*code.front(), "code");
  in.actor_user = UserOf(Member(task, "requester"), entries);
  if (in.actor_user.empty()) in.actor_user = UserOf(Member(sr, "requester"), entries);
  for (size_t i : by_type["Provenance"]) {
    if (!in.actor_user.empty()) break;
    const json& agents = Member(entries_json[i]["resource"], "agent");
    if (!agents.is_array()) continue;
    for (const json& a : agents) {
      in.actor_user = UserOf(Member(a, "who"), entries);
      if (!in.actor_user.empty()) break;
    }
  }
  if (in.actor_user.empty()) {
    return Unprocessable("Task.requester",
                         "name the person who refers: Task.requester (a Practitioner or "
                         "PractitionerRole with an identifier of system urn:careloop:user)");
  }
  if (task.contains("owner")) {
    r.recipient = AgencyOf(task["owner"], entries);
    if (r.recipient.empty()) {
      return Unprocessable("Task.owner",
                           "the Task's owner is an Organization of the directory (identifier of "
                           "system urn:careloop:agency, or Organization/<agency id>)");
    }
  } else {
    const json& addresses = Member(patient, "address");
    if (addresses.is_array() && !addresses.empty()) r.postal_code = Str(addresses[0], "postalCode");
    if (r.postal_code.empty()) {
      return Unprocessable("Task.owner",
                           "name the receiving agency (Task.owner), or give the Patient's postal "
                           "code to route by");
    }
  }
  ASSIGN_OR_RETURN(r.sections, SectionsOfBundle(entries_json, sr, patient));
  if (by_type["Consent"].size() > 1)
    return Unprocessable("Bundle.entry", "a referral transaction holds at most one Consent");
  if (by_type["Consent"].size() == 1) {
    in.consent_entry = by_type["Consent"][0];
    const json& consent = entries_json[in.consent_entry]["resource"];
    if (entries.Resolve(Member(consent, "patient")) != &patient)
      return Unprocessable("Consent.patient", "the Consent is the Bundle's Patient's");
    ASSIGN_OR_RETURN(in.consent, ReadFhirConsent(consent, entries));
  }
  return in;
}

std::string Instant(int64_t unix_nanos) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(unix_nanos),
                          absl::UTCTimeZone());
}

std::string HttpDate(int64_t unix_nanos) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::FromUnixNanos(unix_nanos),
                          absl::UTCTimeZone());
}

namespace {

json Meta(const v1::ReferralView& view) {
  json meta{{"versionId", std::to_string(view.version())}};
  if (view.updated_unix_nanos() != 0) meta["lastUpdated"] = Instant(view.updated_unix_nanos());
  return meta;
}

json Subject(const v1::ReferralView& view) {
  const v1::Identifier& id = view.manifest().subject();
  return json{{"reference", absl::StrCat("Patient/", TaskIdOf(view.referral()))},
              {"identifier", json{{"system", absl::StrCat(kIdentifierSystemPrefix, id.authority())},
                                  {"value", id.value()}}}};
}

// careloop's own facts: delivered, viewed, unassigned.
std::string BusinessStatus(const v1::ReferralView& view) {
  if (view.unassigned()) return "unassigned";
  if (view.status() != v1::TASK_REQUESTED) return "";
  if (view.viewed_unix_nanos() != 0) return "viewed";
  if (view.delivered_unix_nanos() != 0) return "delivered";
  return "routed";
}

}  // namespace

json TaskOf(const v1::ReferralView& view) {
  const std::string id = TaskIdOf(view.referral());
  json t{{"resourceType", "Task"},
         {"id", id},
         {"meta", Meta(view)},
         {"identifier",
          json::array({json{{"system", "urn:careloop:referral"}, {"value", view.referral()}}})},
         {"status", referral::FhirCode(view.status())},
         {"intent", "order"},
         {"code", Coding(kTaskCodeSystem, "fulfill")},
         {"focus", json{{"reference", absl::StrCat("ServiceRequest/", id)}}},
         {"for", Subject(view)},
         {"requester", AgencyReference(view.sender_agency())}};
  if (view.submitted_unix_nanos() != 0) t["authoredOn"] = Instant(view.submitted_unix_nanos());
  if (view.updated_unix_nanos() != 0) t["lastModified"] = Instant(view.updated_unix_nanos());
  if (!view.recipient_agency().empty() && !view.unassigned())
    t["owner"] = AgencyReference(view.recipient_agency());
  if (std::string b = BusinessStatus(view); !b.empty())
    t["businessStatus"] = Coding(kBusinessStatusSystem, b);
  // The last status change's reason.
  for (int i = view.history_size() - 1; i >= 0; --i) {
    const v1::ReferralHistoryEntry& h = view.history(i);
    if (h.status() != view.status() || h.type() != names::event::kStatusChanged) continue;
    if (!h.reason().code().empty()) {
      json reason = Coding(kReasonSystem, h.reason().code());
      if (!h.reason().text().empty()) reason["text"] = h.reason().text();
      t["statusReason"] = reason;
    }
    break;
  }
  if (view.status() == v1::TASK_COMPLETED && !view.outcome().provided().empty()) {
    t["output"] = json::array({json{{"type", Coding(kSdohTemporaryCodes, "resulting-activity")},
                                    {"valueString", view.outcome().provided()}}});
  }
  json extensions = json::array();
  for (const v1::WithheldSection& w : view.withheld()) {
    extensions.push_back(
        json{{"url", kWithheldExtension},
             {"valueString", absl::StrCat(w.section_id(), " (", w.category(), "): ", w.reason())}});
  }
  if (!extensions.empty()) t["extension"] = extensions;
  return t;
}

json TaskHistoryOf(const v1::ReferralView& view, const std::string& base_url) {
  const std::string id = TaskIdOf(view.referral());
  // Each historic Task is the current one with what changed since put back.
  json base = TaskOf(view);
  for (const char* later :
       {"meta", "lastModified", "owner", "businessStatus", "statusReason", "output", "extension"}) {
    base.erase(later);
  }
  std::vector<json> entries;
  std::string owner;
  for (const v1::ReferralHistoryEntry& h : view.history()) {
    const std::string& type = h.type();
    if (type == names::event::kReferralRouted) owner = h.recipient_agency();
    if (type == names::event::kReferralUnassigned) owner.clear();
    if (type != names::event::kReferralSubmitted && type != names::event::kReferralRouted &&
        type != names::event::kStatusChanged && type != names::event::kReferralUnassigned) {
      continue;
    }
    json t = base;
    t["meta"] = json{{"lastUpdated", Instant(h.at_unix_nanos())}};
    t["lastModified"] = Instant(h.at_unix_nanos());
    // Submitted, before its first routing, it is already requested.
    t["status"] = referral::FhirCode(h.status() == v1::TASK_STATUS_UNSPECIFIED ? v1::TASK_REQUESTED
                                                                               : h.status());
    if (!owner.empty()) t["owner"] = AgencyReference(owner);
    if (!h.reason().code().empty()) {
      json reason = Coding(kReasonSystem, h.reason().code());
      if (!h.reason().text().empty()) reason["text"] = h.reason().text();
      t["statusReason"] = reason;
    }
    const bool first = entries.empty();
    entries.push_back(json{{"fullUrl", absl::StrCat(base_url, "/Task/", id)},
                           {"resource", std::move(t)},
                           {"request", json{{"method", first ? "POST" : "PUT"},
                                            {"url", first ? "Task" : absl::StrCat("Task/", id)}}},
                           {"response", json{{"status", first ? "201 Created" : "200 OK"},
                                             {"lastModified", Instant(h.at_unix_nanos())}}}});
  }
  std::reverse(entries.begin(), entries.end());  // newest first
  return json{{"resourceType", "Bundle"},
              {"type", "history"},
              {"total", entries.size()},
              {"entry", entries}};
}

json ServiceRequestOf(const v1::ReferralView& view) {
  const v1::ReferralManifest& m = view.manifest();
  const bool done = view.status() == v1::TASK_COMPLETED;
  const bool ended = view.status() == v1::TASK_CANCELLED || view.status() == v1::TASK_REJECTED ||
                     view.status() == v1::TASK_FAILED || view.status() == v1::TASK_ENTERED_IN_ERROR;
  json sr{{"resourceType", "ServiceRequest"},
          {"id", TaskIdOf(view.referral())},
          {"meta", Meta(view)},
          {"status", done    ? "completed"
                     : ended ? "revoked"
                             : "active"},
          {"intent", "order"},
          {"category", json::array({Coding(kServiceSystem, m.service_category())})},
          {"subject", Subject(view)},
          {"requester", AgencyReference(view.sender_agency())}};
  if (!m.reason().empty()) sr["code"] = json{{"text", m.reason()}};
  static const char* kPriority[] = {"routine", "routine", "urgent", "asap", "stat"};
  const int p = static_cast<int>(m.priority());
  if (p >= 0 && p <= 4) sr["priority"] = kPriority[p];
  if (view.submitted_unix_nanos() != 0) sr["authoredOn"] = Instant(view.submitted_unix_nanos());
  if (!view.recipient_agency().empty() && !view.unassigned())
    sr["performer"] = json::array({AgencyReference(view.recipient_agency())});
  return sr;
}

json PatientOf(const v1::ReferralView& view) {
  json patient{{"resourceType", "Patient"},
               {"id", TaskIdOf(view.referral())},
               {"meta", Meta(view)},
               {"identifier", json::array({Subject(view)["identifier"]})}};
  for (const v1::Section& s : view.sections()) {
    if (s.media_type() != "application/fhir+json" ||
        (s.section_id() != "patient-demographics" && s.section_id() != "patient-contact")) {
      continue;
    }
    const json part = json::parse(s.content(), nullptr, /*allow_exceptions=*/false);
    if (!part.is_object() || Str(part, "resourceType") != "Patient") continue;
    for (const auto& [key, value] : part.items()) {
      if (key == "resourceType" || key == "id" || key == "meta") continue;
      if (key == "identifier" && value.is_array()) {
        for (const json& id : value) patient["identifier"].push_back(id);
        continue;
      }
      patient[key] = value;
    }
  }
  return patient;
}

absl::StatusOr<std::string> ActorOfProvenance(const json& provenance) {
  if (!provenance.is_object() || Str(provenance, "resourceType") != "Provenance") {
    return Refusal(422, "Provenance",
                   "name the person acting: an X-Provenance header holding a Provenance whose "
                   "agent.who has an identifier of system urn:careloop:user");
  }
  const json& agents = Member(provenance, "agent");
  if (agents.is_array()) {
    for (const json& a : agents) {
      std::string v = IdentifierValue(Member(Member(a, "who"), "identifier"), kUserSystem);
      if (!v.empty()) return v;
    }
  }
  return Refusal(422, "Provenance.agent.who",
                 "the Provenance's agent.who has an identifier of system urn:careloop:user");
}

absl::StatusOr<StatusMove> ReadTaskUpdate(const json& task, const std::string& id) {
  if (!task.is_object() || Str(task, "resourceType") != "Task")
    return Invalid("Task", "PUT a Task");
  if (Str(task, "id") != id) return Invalid("Task.id", "the Task's id is the one in the URL");
  StatusMove m;
  const std::optional<v1::TaskStatus> status = referral::FromFhirCode(Str(task, "status"));
  if (!status) return Invalid("Task.status", "unknown Task status code");
  m.status = *status;
  for (const json* c : Codings(Member(task, "statusReason"))) {
    m.reason_code = Str(*c, "code");
    break;
  }
  m.reason_text = Str(Member(task, "statusReason"), "text");
  const json& outputs = Member(task, "output");
  if (outputs.is_array()) {
    for (const json& o : outputs) {
      if (!Str(o, "valueString").empty()) {
        m.provided = Str(o, "valueString");
        continue;
      }
      // An outcome as a Procedure contained in the Task.
      const std::string reference = Str(Member(o, "valueReference"), "reference");
      absl::string_view ref = reference;
      if (!absl::ConsumePrefix(&ref, "#")) continue;
      const json& contained = Member(task, "contained");
      if (!contained.is_array()) continue;
      for (const json& c : contained) {
        if (Str(c, "id") != ref || Str(c, "resourceType") != "Procedure") continue;
        const json& code = Member(c, "code");
        m.provided = Str(code, "text");
        if (std::vector<const json*> cs = Codings(code); m.provided.empty() && !cs.empty())
          m.provided = Str(*cs.front(), "display");
        m.enrolment_status = Str(c, "status");
      }
    }
  }
  if (m.status == v1::TASK_COMPLETED && m.provided.empty()) {
    return Unprocessable("Task.output",
                         "a completed Task says what was provided: an output with a valueString, "
                         "or referencing a contained Procedure with a code");
  }
  return m;
}

}  // namespace careloop::edge::fhir
