// The FHIR R4 API of the edge, without HTTP (DESIGN.md, "The agency edge";
// docs/API.md, "FHIR R4"): careloop as the HL7 SDOH Clinical Care IG's
// Coordination Platform. A referral source (an EHR) posts a transaction
// Bundle (Task + ServiceRequest + Patient, and the resources that support
// them), which becomes one referral signed with its agency's key from the
// edge's custody, naming the person who acted; a "light" recipient polls its
// Tasks and updates their status. Every write is a signed careloop change
// and every read a read made as the system's agency: the hub's policy and
// consent decide exactly as for the console.
//
// Ids: a referral's Task and ServiceRequest share one id, the first 128 bits
// of the SHA-256 of "<sender>/<referral id>" in hex; a version is the
// referral stream's version.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "services/edge/desk.h"
#include "services/edge/hub_client.h"
#include "services/edge/smart_auth.h"

namespace careloop::edge::fhir {

using json = nlohmann::json;

// Code systems and identifier systems careloop defines (docs/API.md).
inline constexpr char kAgencySystem[] = "urn:careloop:agency";
inline constexpr char kUserSystem[] = "urn:careloop:user";
inline constexpr char kIdentifierSystemPrefix[] = "urn:careloop:identifier:";
inline constexpr char kSubjectSystem[] = "urn:careloop:subject";  // the hub's person ids
inline constexpr char kServiceSystem[] = "urn:careloop:service";
inline constexpr char kReasonSystem[] = "urn:careloop:status-reason";
inline constexpr char kBusinessStatusSystem[] = "urn:careloop:business-status";
inline constexpr char kWithheldExtension[] = "urn:careloop:extension:withheld-section";
inline constexpr char kTaskCodeSystem[] = "http://hl7.org/fhir/CodeSystem/task-code";
inline constexpr char kSdohTemporaryCodes[] =
    "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes";

// A refusal the FHIR way: the HTTP status, the element it concerns (a
// FHIRPath expression) and what is wrong, carried on an absl::Status.
absl::Status Refusal(int http_status, const std::string& expression, const std::string& message);
// The HTTP status an error answers with (a Refusal's own; otherwise the
// careloop status mapped: 400, 401, 403, 404, 409, 412, 422, 429, 503, 500).
int HttpStatusOf(const absl::Status& s);
// The OperationOutcome for an error; internal failures say only that
// something failed.
json OperationOutcomeOf(const absl::Status& s);

// What a FHIR request answers. (clang-tidy sees nlohmann::json's
// destructor as one that may throw.)
struct Answer {  // NOLINT(bugprone-exception-escape)
  int status = 200;
  json body;
  std::string etag;           // W/"<version>"
  std::string location;       // for 201
  std::string last_modified;  // an HTTP date
};

// The Task id of a referral "<sender>/<referral id>".
std::string TaskIdOf(const std::string& referral);

class FhirApi {
 public:
  // `base_url`: where the API is served, e.g. https://edge.example/fhir/R4.
  FhirApi(HubClient* hub, Desk* desk, Clock* clock, std::string base_url);

  json Capability() const;
  // Before serving only (the edge's port known once bound).
  void set_base_url(std::string url) { base_url_ = std::move(url); }

  // POST [base] with a transaction Bundle: one new referral.
  absl::StatusOr<Answer> Transaction(const FhirSystem& sys, const json& bundle);
  absl::StatusOr<Answer> ReadTask(const FhirSystem& sys, const std::string& id);
  // Where a search's parameters came from. A person's identifier
  // (patient, subject) is accepted only from a form body: URLs end up in
  // proxies' and servers' access logs, request bodies do not.
  enum class SearchVia { kUrl, kFormBody };
  // GET [base]/Task?... or POST [base]/Task/_search: the Tasks the system's
  // agency sent or owns now.
  absl::StatusOr<Answer> SearchTasks(const FhirSystem& sys,
                                     const std::multimap<std::string, std::string>& params,
                                     SearchVia via);
  // PUT [base]/Task/[id]: a status change by the person `provenance` names
  // (the X-Provenance header), against the version `if_match` names.
  absl::StatusOr<Answer> UpdateTask(const FhirSystem& sys, const std::string& id,
                                    const std::string& if_match, const json& task,
                                    const json& provenance);
  absl::StatusOr<Answer> ReadServiceRequest(const FhirSystem& sys, const std::string& id);
  // GET [base]/Task/[id]/_history (fhir_resources.h, TaskHistoryOf).
  absl::StatusOr<Answer> TaskHistory(const FhirSystem& sys, const std::string& id);
  // Patient/<Task id>: the person as that referral discloses them to the
  // system's agency (fhir_resources.h, PatientOf).
  absl::StatusOr<Answer> ReadPatient(const FhirSystem& sys, const std::string& id);
  // A consent the hub lets the system's agency read (it recorded it, or
  // holds data under it); any other is the 404 of a missing one.
  absl::StatusOr<Answer> ReadConsent(const FhirSystem& sys, const std::string& id);
  // POST [base]/Consent/_search with patient (required, a form body only:
  // never a URL) and status: the person's consents the agency may read. A
  // person the hub does not know, or knows only by another agency's
  // identifier, is an empty Bundle, alike; the search creates no one.
  absl::StatusOr<Answer> SearchConsents(const FhirSystem& sys,
                                        const std::multimap<std::string, std::string>& params,
                                        SearchVia via);
  // The directory: agencies as Organizations, their services as
  // HealthcareServices, as the hub shows them to the system's agency.
  absl::StatusOr<Answer> ReadOrganization(const FhirSystem& sys, const std::string& id);
  absl::StatusOr<Answer> SearchOrganizations(const FhirSystem& sys,
                                             const std::multimap<std::string, std::string>& params);
  absl::StatusOr<Answer> ReadHealthcareService(const FhirSystem& sys, const std::string& id);
  absl::StatusOr<Answer> SearchHealthcareServices(
      const FhirSystem& sys, const std::multimap<std::string, std::string>& params);

 private:
  // The directory actor of the system's agency that `user_id` names, as a
  // staff member; 422 when unknown or inactive.
  absl::StatusOr<StaffMember> ActorOf(const FhirSystem& sys, const std::string& user_id);
  // The referral a Task id names, among those the agency sent or holds; the
  // same 404 for one that does not exist and one it may not see.
  absl::StatusOr<std::string> ReferralOf(const FhirSystem& sys, const std::string& id);
  absl::StatusOr<v1::ReferralView> Open(const FhirSystem& sys, const std::string& referral);
  // The named recipient exists, is active and takes `service` (422 if not).
  absl::Status CheckRecipient(const FhirSystem& sys, const std::string& agency,
                              const std::string& service);
  // Records a consent about the person with this record number; its id.
  absl::StatusOr<std::string> RecordConsent(const StaffMember& who, const std::string& mrn,
                                            v1::Consent consent);
  void Remember(const std::string& referral);
  // The referrals the agency sent and those it holds now (listings: no
  // sections, no history).
  absl::StatusOr<std::vector<v1::ReferralView>> ListAll(const FhirSystem& sys);

  HubClient* hub_;
  Desk* desk_;
  Clock* clock_;
  std::string base_url_;
  absl::Mutex mu_;
  std::map<std::string, std::string> referrals_ ABSL_GUARDED_BY(mu_);  // Task id -> referral
};

}  // namespace careloop::edge::fhir
