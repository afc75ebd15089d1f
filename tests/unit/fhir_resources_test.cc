// careloop's referrals in FHIR terms (services/edge/fhir_resources.h) read
// from the published examples (shared/testdata/fhir): the SDOH Clinical
// Care IG's ServiceRequest imports once its Task is adapted to a new
// referral; the published Task (status accepted) and the R4 core examples
// are refused naming the element; SMART scopes are read and narrowed.
#include "services/edge/fhir_resources.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_consent.h"
#include "services/edge/smart_auth.h"
#include "services/names/names.h"
#include "tests/support/test_env.h"

namespace careloop::edge::fhir {
namespace {

using ::careloop::testing::ReadFileOrDie;
using ::careloop::testing::TempDir;
using ::careloop::testing::TestData;

json Example(const std::string& name) {
  return json::parse(ReadFileOrDie(TestData("fhir/" + name)));
}

json Entry(const std::string& id, const json& resource) {
  return json{{"fullUrl", "urn:uuid:" + id},
              {"resource", resource},
              {"request", json{{"method", "POST"}, {"url", resource["resourceType"]}}}};
}

json Patient(const std::string& mrn) {
  return json::parse(R"({"resourceType":"Patient","identifier":[{"type":{"coding":[
      {"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"value":")" +
                     mrn + R"("}],"name":[{"family":"Abbas"}],"telecom":[{"system":"phone",
      "value":"555-0100"}]})");
}

// A transaction of `task` and `sr` for a Patient, requested by u-planner.
json Bundle(json task, json sr) {
  task["focus"] = json{{"reference", "urn:uuid:sr"}};
  task["for"] = json{{"reference", "urn:uuid:patient"}};
  task["requester"] = json{{"identifier", json{{"system", kUserSystem}, {"value", "u-planner"}}}};
  sr["subject"] = json{{"reference", "urn:uuid:patient"}};
  return json{{"resourceType", "Bundle"},
              {"type", "transaction"},
              {"entry", json::array({Entry("task", task), Entry("sr", sr),
                                     Entry("patient", Patient("000123"))})}};
}

json SdohTask() {
  json task = Example("sdoh-clinicalcare/SDOHCC-Task-OrderFulfillment-Example-1.json");
  task.erase("output");
  return task;
}

json SdohServiceRequest() {
  return Example("sdoh-clinicalcare/SDOHCC-ServiceRequest-HungerVitalSign-Example-1.json");
}

// The element a refusal names, or "" when it is not a refusal.
std::string Refused(const absl::StatusOr<IncomingReferral>& r, int http = 422) {
  if (r.ok()) return "";
  EXPECT_EQ(HttpStatusOf(r.status()), http) << r.status();
  const json outcome = OperationOutcomeOf(r.status());
  return outcome["issue"][0].value("expression", json::array({""}))[0].get<std::string>();
}

TEST(FhirReferralBundle, TheIgExamplesImportOnceTheTaskIsANewReferralToAnAgency) {
  json task = SdohTask();
  task["status"] = "requested";
  task["owner"] = json{{"identifier", json{{"system", kAgencySystem}, {"value", "org.foodbank"}}}};
  absl::StatusOr<IncomingReferral> in =
      ReadReferralBundle(Bundle(task, SdohServiceRequest()), "org.stmarys");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->referral.mrn, "000123");
  EXPECT_EQ(in->referral.service, "food-insecurity");  // food-insecurity-domain
  EXPECT_EQ(in->referral.reason, "710925007");
  EXPECT_EQ(in->referral.recipient, "org.foodbank");
  EXPECT_EQ(in->actor_user, "u-planner");
  ASSERT_EQ(in->referral.sections.size(), 3u);
  // Demographics and contact apart, so consent can let one through alone.
  EXPECT_EQ(in->referral.sections[0].category, "demographics");
  EXPECT_EQ(in->referral.sections[1].category, "contact");
  EXPECT_EQ(in->referral.sections[2].category, "social-needs");
  for (const SectionInput& s : in->referral.sections) {
    EXPECT_EQ(s.media_type, "application/fhir+json");
    EXPECT_FALSE(json::parse(s.text)["resourceType"].get<std::string>().empty());
  }
  EXPECT_EQ(in->referral.sections[1].text.find("Abbas"), std::string::npos)
      << "the contact section holds no name";
  EXPECT_EQ(in->referral.sections[0].text.find("555-0100"), std::string::npos)
      << "the demographics section holds no phone number";
}

TEST(FhirReferralBundle, ThePublishedTaskAndTheCoreExamplesAreRefusedNamingTheElement) {
  json published = SdohTask();  // status accepted, as published
  EXPECT_EQ(Refused(ReadReferralBundle(Bundle(published, SdohServiceRequest()), "org.stmarys")),
            "Task.status");
  for (const char* name : {"Task-example1.json", "Task-example2.json", "Task-example6.json"}) {
    EXPECT_EQ(
        Refused(ReadReferralBundle(
            Bundle(Example(std::string("r4-core/") + name), SdohServiceRequest()), "org.stmarys")),
        "Task.status")
        << name;
  }
  json task = SdohTask();
  task["status"] = "requested";
  task["owner"] = json{{"reference", "Organization/org.foodbank"}};
  // The physiotherapy ServiceRequest is completed, not an active order.
  EXPECT_EQ(Refused(ReadReferralBundle(
                Bundle(task, Example("r4-core/ServiceRequest-physiotherapy.json")), "org.stmarys")),
            "ServiceRequest.status");
  // A Consent about someone else than the Bundle's Patient.
  json b = Bundle(task, SdohServiceRequest());
  b["entry"].push_back(Entry("consent", Example("r4-core/Consent-consent-example-notTime.json")));
  EXPECT_EQ(Refused(ReadReferralBundle(b, "org.stmarys")), "Consent.patient");
}

std::string ConsentRefused(const absl::StatusOr<v1::Consent>& c) {
  if (c.ok()) return "";
  EXPECT_EQ(HttpStatusOf(c.status()), 422) << c.status();
  return OperationOutcomeOf(c.status())["issue"][0]["expression"][0].get<std::string>();
}

TEST(FhirConsent, TheCoreExamplesImportOrAreRefusedNamingTheElement) {
  const Entries none;
  // Opt-out consents deny what careloop denies without consent.
  EXPECT_EQ(ConsentRefused(
                ReadFhirConsent(Example("r4-core/Consent-consent-example-grantor.json"), none)),
            "Consent.policyRule");
  EXPECT_EQ(ConsentRefused(
                ReadFhirConsent(Example("r4-core/Consent-consent-example-Emergency.json"), none)),
            "Consent.policyRule");
  // A recipient that is a practitioner, not an agency.
  EXPECT_EQ(ConsentRefused(
                ReadFhirConsent(Example("r4-core/Consent-consent-example-notThem.json"), none)),
            "Consent.provision.actor[0].reference");
  // No signed form to fingerprint, unless one is given with it.
  const json not_time = Example("r4-core/Consent-consent-example-notTime.json");
  EXPECT_EQ(ConsentRefused(ReadFhirConsent(not_time, none)), "Consent.sourceAttachment");
  absl::StatusOr<v1::Consent> c =
      ReadFhirConsent(not_time, none, ConsentEvidence{std::string(32, 'e'), "application/pdf"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->provision().permit());
  EXPECT_EQ(c->grantor().kind(), v1::GRANTOR_SUBJECT);
  // [2015-01-01, 2015-02-02): FHIR's end day is included.
  EXPECT_EQ(c->period().start_unix_nanos(), 1420070400LL * 1'000'000'000);
  EXPECT_EQ(c->period().end_unix_nanos(), 1422835200LL * 1'000'000'000);
}

TEST(FhirConsent, WhatCareloopRecordsReadsFromAndBackToFhir) {
  const json fhir_consent = json::parse(R"({"resourceType":"Consent","status":"active",
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope",
                        "code":"patient-privacy"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
    "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentpolicycodes",
                             "code":"hipaa-auth"}]},
    "sourceAttachment":{"contentType":"application/pdf","data":"c2lnbmVkIGZvcm0="},
    "provision":{"period":{"start":"2026-01-01"},
      "actor":[{"role":{"coding":[{"system":
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
        "reference":{"reference":"Organization/org.foodbank"}}],
      "purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"CAREMGT"}],
      "class":[{"system":"urn:careloop:category","code":"contact"}],
      "provision":[{"type":"deny","securityLabel":[{"system":
        "http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]}]}})");
  absl::StatusOr<v1::Consent> c = ReadFhirConsent(fhir_consent, Entries());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->hipaa_authorization());
  ASSERT_EQ(c->provision().recipients_size(), 1);
  EXPECT_EQ(c->provision().recipients(0).agency_id(), "org.foodbank");
  EXPECT_EQ(c->provision().purposes(0), "care-coordination");
  EXPECT_EQ(c->provision().categories(0), "contact");
  ASSERT_EQ(c->provision().exceptions_size(), 1);
  EXPECT_FALSE(c->provision().exceptions(0).permit());
  EXPECT_EQ(c->provision().exceptions(0).categories(0), "sud-part2");
  EXPECT_EQ(c->evidence().sha256().size(), 32u);
  EXPECT_EQ(c->evidence().media_type(), "application/pdf");
  c->set_consent_id("c-1");
  const json back = FhirConsentOf(*c, json{{"system", "urn:x"}, {"value", "000123"}});
  EXPECT_EQ(back["provision"]["actor"][0]["reference"]["identifier"]["value"], "org.foodbank");
  EXPECT_EQ(back["provision"]["class"][0]["code"], "contact");
  EXPECT_EQ(back["provision"]["provision"][0]["type"], "deny");
  // Read again, it says the same.
  json again = back;
  again["sourceAttachment"] = fhir_consent["sourceAttachment"];
  absl::StatusOr<v1::Consent> round = ReadFhirConsent(again, Entries());
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->provision().SerializeAsString(), c->provision().SerializeAsString());
  // Nested provisions say permit or deny; a recipient role is a recipient's.
  json untyped = fhir_consent;
  untyped["provision"]["provision"][0].erase("type");
  EXPECT_EQ(ConsentRefused(ReadFhirConsent(untyped, Entries())),
            "Consent.provision.provision[0].type");
  json custodian = fhir_consent;
  custodian["provision"]["actor"][0]["role"]["coding"][0]["code"] = "CST";
  EXPECT_EQ(ConsentRefused(ReadFhirConsent(custodian, Entries())),
            "Consent.provision.actor[0].role");
  json purpose = fhir_consent;
  purpose["provision"]["purpose"][0]["code"] = "XYZ";
  EXPECT_EQ(ConsentRefused(ReadFhirConsent(purpose, Entries())), "Consent.provision.purpose[0]");
}

TEST(FhirReferralBundle, EachMissingPieceIsNamed) {
  json task = SdohTask();
  task["status"] = "requested";
  task["owner"] = json{{"reference", "Organization/org.foodbank"}};
  const json good = Bundle(task, SdohServiceRequest());
  ASSERT_TRUE(ReadReferralBundle(good, "org.stmarys").ok());
  EXPECT_EQ(Refused(ReadReferralBundle(json{{"resourceType", "Patient"}}, "a"), 400), "Bundle");
  json batch = good;
  batch["type"] = "batch";
  EXPECT_EQ(Refused(ReadReferralBundle(batch, "a"), 400), "Bundle.type");
  json no_requester = good;
  no_requester["entry"][0]["resource"].erase("requester");
  EXPECT_EQ(Refused(ReadReferralBundle(no_requester, "org.stmarys")), "Task.requester");
  json no_owner_no_postcode = good;
  no_owner_no_postcode["entry"][0]["resource"].erase("owner");
  EXPECT_EQ(Refused(ReadReferralBundle(no_owner_no_postcode, "org.stmarys")), "Task.owner");
  json routed = no_owner_no_postcode;
  routed["entry"][2]["resource"]["address"] = json::parse(R"([{"postalCode":"02139"}])");
  absl::StatusOr<IncomingReferral> by_criteria = ReadReferralBundle(routed, "org.stmarys");
  ASSERT_TRUE(by_criteria.ok()) << by_criteria.status();
  EXPECT_EQ(by_criteria->referral.postal_code, "02139");
  json wrong_focus = good;
  wrong_focus["entry"][0]["resource"]["focus"] = json{{"reference", "urn:uuid:nothing"}};
  EXPECT_EQ(Refused(ReadReferralBundle(wrong_focus, "org.stmarys")), "Task.focus");
  json no_category = good;
  no_category["entry"][1]["resource"].erase("category");
  EXPECT_EQ(Refused(ReadReferralBundle(no_category, "org.stmarys")), "ServiceRequest.category");
  json other_mrn = good;
  other_mrn["entry"][2]["resource"]["identifier"][0].erase("type");
  EXPECT_EQ(Refused(ReadReferralBundle(other_mrn, "org.stmarys")), "Patient.identifier");
  // The agency's own identifier system names the record number too.
  other_mrn["entry"][2]["resource"]["identifier"][0]["system"] =
      "urn:careloop:identifier:org.stmarys/mrn";
  EXPECT_TRUE(ReadReferralBundle(other_mrn, "org.stmarys").ok());
  json put = good;
  put["entry"][1]["request"]["method"] = "PUT";
  EXPECT_EQ(Refused(ReadReferralBundle(put, "org.stmarys"), 400), "Bundle.entry[1].request.method");
}

TEST(FhirTask, AReferralReadsAsTheIgTaskAndServiceRequest) {
  v1::ReferralView v;
  v.set_referral("org.stmarys/r-1");
  v.set_sender_agency("org.stmarys");
  v.set_recipient_agency("org.foodbank");
  v.set_status(v1::TASK_COMPLETED);
  v.set_version(7);
  v.set_submitted_unix_nanos(1'700'000'000'000'000'000);
  v.set_updated_unix_nanos(1'700'000'100'000'000'000);
  v.mutable_outcome()->set_provided("weekly food box");
  v.mutable_manifest()->mutable_subject()->set_authority("org.stmarys/mrn");
  v.mutable_manifest()->mutable_subject()->set_value("000123");
  v.mutable_manifest()->set_service_category("food-insecurity");
  v.mutable_manifest()->set_priority(v1::URGENT);
  auto* w = v.add_withheld();
  w->set_section_id("patient-contact");
  w->set_category("contact");
  w->set_reason("no consent");
  const json t = TaskOf(v);
  EXPECT_EQ(t["id"], TaskIdOf("org.stmarys/r-1"));
  EXPECT_EQ(t["id"].get<std::string>().size(), 32u);
  EXPECT_EQ(t["status"], "completed");
  EXPECT_EQ(t["intent"], "order");
  EXPECT_EQ(t["meta"]["versionId"], "7");
  EXPECT_EQ(t["authoredOn"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(t["focus"]["reference"], "ServiceRequest/" + TaskIdOf("org.stmarys/r-1"));
  EXPECT_EQ(t["for"]["identifier"]["value"], "000123");
  EXPECT_EQ(t["owner"]["identifier"]["value"], "org.foodbank");
  EXPECT_EQ(t["output"][0]["valueString"], "weekly food box");
  EXPECT_EQ(t["extension"][0]["url"], kWithheldExtension);
  const json sr = ServiceRequestOf(v);
  EXPECT_EQ(sr["status"], "completed");
  EXPECT_EQ(sr["priority"], "urgent");
  EXPECT_EQ(sr["category"][0]["coding"][0]["code"], "food-insecurity");
  EXPECT_EQ(sr["performer"][0]["identifier"]["value"], "org.foodbank");
}

// A referral declined for capacity and rerouted: its history shows each
// step as the Task was then, the reroute as an owner change; a delivery
// and a view are not steps.
TEST(FhirTask, TheHistoryShowsEachStepAndTheRerouteAsAnOwnerChange) {
  v1::ReferralView v;
  v.set_referral("org.stmarys/r-1");
  v.set_sender_agency("org.stmarys");
  v.set_recipient_agency("org.b");
  v.set_status(v1::TASK_ACCEPTED);
  v.mutable_manifest()->mutable_subject()->set_value("000123");
  int64_t at = 1'700'000'000'000'000'000;
  auto step = [&](const std::string& type, v1::TaskStatus status, const char* recipient = "",
                  const char* reason = "") {
    v1::ReferralHistoryEntry* h = v.add_history();
    h->set_type(type);
    h->set_status(status);
    h->set_recipient_agency(recipient);
    h->mutable_reason()->set_code(reason);
    h->set_at_unix_nanos(at += 1'000'000'000);
  };
  step(names::event::kReferralSubmitted, v1::TASK_STATUS_UNSPECIFIED);
  step(names::event::kReferralRouted, v1::TASK_REQUESTED, "org.a");
  step(names::event::kReferralDelivered, v1::TASK_REQUESTED);
  step(names::event::kStatusChanged, v1::TASK_REJECTED, "", "no-capacity");
  step(names::event::kReferralRouted, v1::TASK_REQUESTED, "org.b");
  step(names::event::kReferralViewed, v1::TASK_REQUESTED);
  step(names::event::kStatusChanged, v1::TASK_ACCEPTED);
  const json h = TaskHistoryOf(v, "https://edge.example/fhir/R4");
  EXPECT_EQ(h["type"], "history");
  ASSERT_EQ(h["entry"].size(), 5u) << h.dump(1);
  std::vector<std::string> seen;
  for (const json& e : h["entry"]) {
    const json& t = e["resource"];
    seen.push_back(t["status"].get<std::string>() + "@" +
                   (t.contains("owner") ? t["owner"]["identifier"]["value"].get<std::string>()
                                        : std::string("-")));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"accepted@org.b", "requested@org.b", "rejected@org.a",
                                            "requested@org.a", "requested@-"}));
  EXPECT_EQ(h["entry"][2]["resource"]["statusReason"]["coding"][0]["code"], "no-capacity");
  EXPECT_FALSE(h["entry"][0]["resource"].contains("statusReason"));
  EXPECT_EQ(h["entry"][4]["request"]["method"], "POST");
  EXPECT_EQ(h["entry"][0]["request"]["method"], "PUT");
}

TEST(FhirTask, AnUpdateReadsItsMoveAndAContainedProcedure) {
  const json task = json::parse(R"({"resourceType":"Task","id":"abc","status":"completed",
    "contained":[{"resourceType":"Procedure","id":"p","status":"completed",
                  "subject":{"display":"x"},"code":{"text":"enrolled"}}],
    "output":[{"type":{"text":"r"},"valueReference":{"reference":"#p"}}]})");
  absl::StatusOr<StatusMove> m = ReadTaskUpdate(task, "abc");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->status, v1::TASK_COMPLETED);
  EXPECT_EQ(m->provided, "enrolled");
  EXPECT_EQ(m->enrolment_status, "completed");
  EXPECT_EQ(HttpStatusOf(ReadTaskUpdate(task, "other").status()), 400);
  json bare = task;
  bare.erase("output");
  EXPECT_EQ(HttpStatusOf(ReadTaskUpdate(bare, "abc").status()), 422);
  bare["status"] = "bogus";
  EXPECT_EQ(HttpStatusOf(ReadTaskUpdate(bare, "abc").status()), 400);
}

TEST(SmartScopes, V1AndV2ScopesAreReadAndNarrowedToTheRegistration) {
  absl::StatusOr<FhirScopes> registered =
      FhirScopes::Parse("system/Task.cruds system/ServiceRequest.rs");
  ASSERT_TRUE(registered.ok());
  absl::StatusOr<FhirScopes> asked = FhirScopes::Parse("system/*.read system/Patient.write");
  ASSERT_TRUE(asked.ok());
  const FhirScopes granted = asked->Within(*registered);
  EXPECT_TRUE(granted.Allows("Task", 'r'));
  EXPECT_TRUE(granted.Allows("ServiceRequest", 's'));
  EXPECT_FALSE(granted.Allows("Task", 'u')) << "not asked for";
  EXPECT_FALSE(granted.Allows("Patient", 'c')) << "not registered";
  EXPECT_EQ(granted.ToString(), "system/ServiceRequest.rs system/Task.rs");
  for (const char* bad : {"user/Task.read", "system/Task", "system/Task.x", "patient/*.read"}) {
    EXPECT_FALSE(FhirScopes::Parse(bad).ok()) << bad;
  }
}

TEST(SmartJws, OnlyARegisteredKeysSignatureVerifies) {
  // A JWKS with one P-384 key that is not a point of the curve is refused.
  const std::string bad = R"({"keys":[{"kty":"EC","crv":"P-384","x":")" + std::string(64, 'A') +
                          R"(","y":")" + std::string(64, 'A') + R"("}]})";
  EXPECT_FALSE(
      RegisterFhirClient(TempDir().path(), FhirClient{"c", "org.a", bad, "system/*.read"}).ok());
  EXPECT_FALSE(VerifyJws("a.b.c", bad).ok());
  EXPECT_FALSE(VerifyJws("not a jws", "{}").ok());
}

// A key made with OpenSSL, its public half as a JWK, and compact JWS made
// with it as a SMART client would (ES384: the raw r||s; RS384: PKCS#1 v1.5).
class JwsKey {
 public:
  static JwsKey Ec() { return JwsKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), true); }
  static JwsKey Rsa() {
    return JwsKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)), false);
  }
  JwsKey(JwsKey&&) = default;

  std::string Jwks(const std::string& kid) const {
    nlohmann::json jwk{{"kid", kid}};
    if (ec_) {
      jwk.update({{"kty", "EC"},
                  {"crv", "P-384"},
                  {"x", Param(OSSL_PKEY_PARAM_EC_PUB_X, 48)},
                  {"y", Param(OSSL_PKEY_PARAM_EC_PUB_Y, 48)}});
    } else {
      jwk.update({{"kty", "RSA"},
                  {"n", Param(OSSL_PKEY_PARAM_RSA_N, 0)},
                  {"e", Param(OSSL_PKEY_PARAM_RSA_E, 0)}});
    }
    return nlohmann::json{{"keys", nlohmann::json::array({jwk})}}.dump();
  }

  std::string Sign(const std::string& kid, const std::string& payload) const {
    const std::string input =
        absl::StrCat(B64(nlohmann::json{{"alg", ec_ ? "ES384" : "RS384"}, {"kid", kid}}.dump()),
                     ".", B64(payload));
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    size_t len = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key_.get()), 1);
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()), 1);
    std::string sig(len, '\0');
    auto* out = reinterpret_cast<unsigned char*>(sig.data());
    EXPECT_EQ(EVP_DigestSign(ctx.get(), out, &len, in, input.size()), 1);
    sig.resize(len);
    if (ec_) sig = RawOfDer(sig);
    return absl::StrCat(input, ".", B64(sig));
  }

 private:
  JwsKey(EVP_PKEY* key, bool ec) : key_(key, EVP_PKEY_free), ec_(ec) {
    CARELOOP_CHECK(key != nullptr);
  }
  static std::string B64(const std::string& s) { return absl::WebSafeBase64Escape(s); }
  // A big-endian parameter, left-padded to `width` bytes when given.
  std::string Param(const char* name, int width) const {
    BIGNUM* bn = nullptr;
    CARELOOP_CHECK(EVP_PKEY_get_bn_param(key_.get(), name, &bn) == 1);
    const int n = width > 0 ? width : BN_num_bytes(bn);
    std::string out(n, '\0');
    CARELOOP_CHECK(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), n) == n);
    BN_free(bn);
    return B64(out);
  }
  static std::string RawOfDer(const std::string& der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    CARELOOP_CHECK(sig != nullptr);
    std::string raw(96, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 48);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 48, 48);
    ECDSA_SIG_free(sig);
    return raw;
  }

  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
  bool ec_;
};

TEST(SmartJws, AClientsEs384AndRs384SignaturesVerifyAndNothingElse) {
  const std::string payload = R"({"iss":"ehr-1","jti":"j1"})";
  for (bool ec : {true, false}) {
    SCOPED_TRACE(ec ? "ES384" : "RS384");
    const JwsKey key = ec ? JwsKey::Ec() : JwsKey::Rsa();
    const JwsKey other = ec ? JwsKey::Ec() : JwsKey::Rsa();
    const std::string jws = key.Sign("k1", payload);
    absl::StatusOr<std::string> verified = VerifyJws(jws, key.Jwks("k1"));
    ASSERT_TRUE(verified.ok()) << verified.status();
    EXPECT_EQ(*verified, payload);
    // Negative controls: another key, another kid, a changed payload.
    EXPECT_FALSE(VerifyJws(jws, other.Jwks("k1")).ok());
    EXPECT_FALSE(VerifyJws(jws, key.Jwks("k2")).ok());
    std::vector<std::string> parts = absl::StrSplit(jws, '.');
    parts[1] = absl::WebSafeBase64Escape(R"({"iss":"ehr-2","jti":"j1"})");
    EXPECT_FALSE(VerifyJws(absl::StrJoin(parts, "."), key.Jwks("k1")).ok());
  }
}

}  // namespace
}  // namespace careloop::edge::fhir
