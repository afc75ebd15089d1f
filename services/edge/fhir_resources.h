// careloop's referrals in FHIR R4 terms and back (docs/API.md, "FHIR R4"),
// pure functions without the hub: a referral transaction Bundle read into
// what the desk sends, and a referral as the Task and ServiceRequest the
// SDOH Clinical Care IG exchanges. Refusals name the element (fhir_api.h's
// Refusal).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "careloop/v1/consent.pb.h"
#include "careloop/v1/referral.pb.h"
#include "services/edge/desk.h"

namespace careloop::edge::fhir {

using json = nlohmann::json;

// A referral as an EHR's transaction Bundle gives it.
struct IncomingReferral {
  NewReferral referral;                  // sections derived by data category
  std::string actor_user;                // the requester's directory user id
  std::vector<std::string> entry_types;  // each entry's resourceType, in order
  size_t task_entry = 0, service_request_entry = 0;
  // A Consent the person gave, recorded before the referral is sent.
  std::optional<v1::Consent> consent;
  size_t consent_entry = 0;
};

// Reads a transaction Bundle sent by `agency`: exactly one Task (intent
// order, code fulfill, status requested, focus the ServiceRequest, for the
// Patient), one ServiceRequest (active order, a service category), one
// Patient (the agency's record number), and Condition, Goal, Observation,
// Practitioner, PractitionerRole, Organization and Provenance entries, and
// at most one Consent about the Patient (fhir_consent.h).
absl::StatusOr<IncomingReferral> ReadReferralBundle(const json& bundle, const std::string& agency);

// The Task of a referral as `caller` sees it.
json TaskOf(const v1::ReferralView& view);
// GET Task/[id]/_history: a Task per step the caller may see — submitted,
// each routing (an escalation or a reroute is an owner change), each status
// change, unassigned — newest first, as a FHIR history Bundle.
json TaskHistoryOf(const v1::ReferralView& view, const std::string& base_url);
// Its ServiceRequest (from the signed manifest).
json ServiceRequestOf(const v1::ReferralView& view);
// The person as this referral discloses them to `caller`: the identifier
// Task.for shows, and the demographics and contact sections only when
// consent let the caller see them (Patient/<Task id>).
json PatientOf(const v1::ReferralView& view);

// What a Task update asks for: the status move, from the Task the client
// PUT (its status, statusReason and output; a completed Task's outcome
// from a contained Procedure or a string output).
absl::StatusOr<StatusMove> ReadTaskUpdate(const json& task, const std::string& id);

// The directory user id a Provenance names as its agent (an identifier of
// system urn:careloop:user).
absl::StatusOr<std::string> ActorOfProvenance(const json& provenance);

// RFC 3339 (FHIR instant) and RFC 7231 (HTTP) times of Unix nanoseconds.
std::string Instant(int64_t unix_nanos);
std::string HttpDate(int64_t unix_nanos);

}  // namespace careloop::edge::fhir
