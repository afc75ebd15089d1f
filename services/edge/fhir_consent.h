// A person's consent in FHIR R4 terms and careloop's (docs/API.md, "FHIR
// R4", Consent): what a FHIR Consent says becomes a careloop consent (a
// permit with nested exceptions, recipients by agency, purposes, data
// categories, a period, the signed form's SHA-256), or is refused naming the
// element careloop cannot record; and a recorded consent reads back as a
// FHIR Consent. Pure functions: the desk records it, the hub decides.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "careloop/v1/consent.pb.h"
#include "services/edge/fhir_json.h"

namespace careloop::edge::fhir {

inline constexpr char kCategorySystem[] = "urn:careloop:category";

struct ConsentEvidence {
  std::string sha256;  // 32 bytes; empty: from sourceAttachment.data
  std::string media_type;
};

// The careloop consent a FHIR Consent states (without its subject, which
// the caller resolves). `entries` resolves references inside a Bundle;
// `evidence` stands in for a sourceAttachment without data.
absl::StatusOr<v1::Consent> ReadFhirConsent(const json& consent, const Entries& entries,
                                            const ConsentEvidence& evidence = {});

// A recorded consent as a FHIR Consent about the person `patient` (an
// Identifier, as the reader knows them).
json FhirConsentOf(const v1::Consent& consent, const json& patient);

}  // namespace careloop::edge::fhir
