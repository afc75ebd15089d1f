// careloop referral send|inbox|sent|show|accept|decline|update|complete|cancel.
// `send` seals the sections (salted digests), signs the manifest and sends
// both; `show` checks, as a recipient would, the sender's signature with the
// sender's key from the directory and every section it got against the
// signed manifest.
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/crypto.h"
#include "base/sha256.h"
#include "careloop/v1/directory.grpc.pb.h"
#include "careloop/v1/referral.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "services/edge/desk.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_resources.h"
#include "services/referral/lifecycle.h"
#include "services/referral/sections.h"
#include "services/trust/envelope.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

template <typename Req, typename Resp, typename Method, typename TextFn>
void Call(Globals& g, Method method, const Req& req, TextFn text) {
  CallUnary<v1::ReferralService, Req, Resp>(g, method, req, text);
}

// ID:CATEGORY:TEXT or ID:CATEGORY:@FILE[:MEDIA-TYPE]
absl::StatusOr<v1::Section> ParseSection(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        "--section takes ID:CATEGORY:TEXT or ID:CATEGORY:@FILE (e.g. "
        "needs:social-needs:@screen.json)");
  }
  v1::Section s;
  s.set_section_id(parts[0]);
  s.set_category(parts[1]);
  s.set_media_type("text/plain");
  if (!parts[2].empty() && parts[2][0] == '@') {
    std::string file = parts[2].substr(1);
    const size_t colon = file.rfind(':');
    if (colon != std::string::npos) {
      s.set_media_type(file.substr(colon + 1));
      file = file.substr(0, colon);
    } else if (absl::EndsWith(file, ".json")) {
      s.set_media_type("application/json");
    } else if (absl::EndsWith(file, ".pdf")) {
      s.set_media_type("application/pdf");
    }
    absl::StatusOr<std::string> content = ReadFile(file);
    if (!content.ok()) return content.status();
    s.set_content(*content);
  } else {
    s.set_content(parts[2]);
  }
  return s;
}

// Parses `specs` into sections (after those given), seals them with fresh
// salts into `payload`'s digests, signs `payload`, and fills `req` with the
// envelope and the sections. False, with the exit code set, on bad input.
template <typename Payload, typename Req>
bool SealAndSign(Globals& g, std::vector<v1::Section> sections,
                 const std::vector<std::string>& specs, Payload* payload, const Signer& signer,
                 Req* req) {
  for (const std::string& spec : specs) {
    absl::StatusOr<v1::Section> sec = ParseSection(spec);
    if (!sec.ok()) {
      g.exit_code = FailUsage(std::string(sec.status().message()));
      return false;
    }
    sections.push_back(*sec);
  }
  absl::StatusOr<std::vector<v1::SectionDigest>> digests =
      referral::SealSections(&sections, referral::RandomBytes);
  if (!digests.ok()) {
    g.exit_code = FailUsage(std::string(digests.status().message()));
    return false;
  }
  for (auto& d : *digests) *payload->add_sections() = d;
  absl::StatusOr<std::string> envelope = Sign(*payload, signer);
  if (!envelope.ok()) {
    g.exit_code = FailUsage(std::string(envelope.status().message()));
    return false;
  }
  req->set_envelope(*envelope);
  for (auto& sec : sections) *req->add_sections() = sec;
  return true;
}

const std::map<std::string, v1::ReferralPriority>& Priorities() {
  static const std::map<std::string, v1::ReferralPriority> p = {
      {"routine", v1::ROUTINE}, {"urgent", v1::URGENT}, {"asap", v1::ASAP}, {"stat", v1::STAT}};
  return p;
}

void PrintList(const v1::ListReferralsResponse& r) {
  if (r.referrals().empty()) std::cout << "no referrals\n";
  for (const auto& v : r.referrals()) {
    std::cout << v.referral() << "  " << referral::FhirCode(v.status()) << "  "
              << v.manifest().service_category() << "  from " << v.sender_agency() << " to "
              << v.recipient_agency() << "  priority "
              << v1::ReferralPriority_Name(v.manifest().priority()) << "\n";
  }
}

// Checks the signed manifest with the sender's keys from the directory and
// every section received against it; returns a line per check.
// The sender's key: a PEM file the recipient holds, else the directory's
// record of the key that signed (at --directory-hub, default the hub).
std::string CheckAsRecipient(const Globals& g, const v1::ReferralView& v,
                             const std::string& sender_key_file, const std::string& directory) {
  v1::Envelope e;
  if (!e.ParseFromString(v.manifest_envelope())) return "  signature: no envelope\n";
  std::string out;
  bool signature_ok = false;
  if (!sender_key_file.empty()) {
    absl::StatusOr<std::string> pem = ReadFile(sender_key_file);
    absl::StatusOr<trust::Ed25519PublicKey> pub =
        pem.ok() ? trust::Ed25519PublicKey::FromPem(*pem) : pem.status();
    if (!pub.ok() && pem.ok()) {
      // A private key file works too: its public half is taken.
      absl::StatusOr<trust::Ed25519PrivateKey> priv = trust::Ed25519PrivateKey::FromPem(*pem);
      if (priv.ok()) pub = priv->public_key();
    }
    signature_ok = pub.ok() && pub->Verify(trust::SigningInput(e), e.signature());
  } else {
    grpc::ClientContext ctx;
    Prepare(g, &ctx);
    v1::GetAgencyRequest req;
    req.set_agency_id(e.sender_agency());
    v1::AgencyRecord sender;
    Globals at = g;
    if (!directory.empty()) at.hub = directory;
    grpc::Status st = v1::DirectoryService::NewStub(Connect(at))->GetAgency(&ctx, req, &sender);
    for (const auto& k : sender.keys()) {
      if (!st.ok() || k.key_id() != e.key_id()) continue;
      absl::StatusOr<trust::Ed25519PublicKey> pub =
          trust::Ed25519PublicKey::FromRaw(k.public_key());
      signature_ok = pub.ok() && pub->Verify(trust::SigningInput(e), e.signature());
    }
  }
  absl::StrAppend(&out, "  signature of ", e.sender_agency(), " (key ", e.key_id(),
                  "): ", signature_ok ? "verified" : "NOT VERIFIED", "\n");
  v1::ReferralManifest m;
  m.ParseFromString(e.payload());
  std::vector<v1::Section> got(v.sections().begin(), v.sections().end());
  absl::Status sections = referral::VerifySections(m.sections(), got, /*require_all=*/false);
  absl::StrAppend(&out, "  sections against the signed digests: ",
                  sections.ok() ? "verified" : std::string(sections.message()), "\n");
  return out;
}

struct SendOpts {
  std::string id, subject, service, reason, priority = "routine", purpose = "care-coordination", to,
                                            postal_code, county, language, force;
  uint32_t age = 0;
  std::vector<std::string> sections;
  std::string fhir;  // a FHIR transaction Bundle instead of the flags
  Signer signer;
};
void PrintSent(const v1::SubmitReferralResponse& r) {
  std::cout << "sent " << r.referral() << " to " << r.recipient_agency() << "\n";
  for (const auto& c : r.candidates()) {
    std::cout << "  " << (c.eligible() ? "candidate " : "passed over ") << c.agency_id() << ": "
              << absl::StrJoin(c.reasons(), "; ") << "\n";
  }
  for (const auto& w : r.withheld()) {
    std::cout << "  withheld " << w.section_id() << " (" << w.category() << "): " << w.reason()
              << "\n";
  }
}

// referral send --fhir: the Bundle read as the edge's FHIR API reads it
// (what careloop cannot take is refused naming the element), signed with
// the CLI's key by --user, who must be the person the Bundle names.
void SendFhir(Globals& g, const SendOpts& o) {
  absl::StatusOr<std::string> text = ReadFile(o.fhir);
  if (!text.ok()) {
    g.exit_code = FailUsage(std::string(text.status().message()));
    return;
  }
  const nlohmann::json bundle = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  absl::StatusOr<edge::fhir::IncomingReferral> in =
      bundle.is_discarded() ? absl::InvalidArgumentError(o.fhir + " is not JSON")
                            : edge::fhir::ReadReferralBundle(bundle, o.signer.sender);
  if (!in.ok()) {
    const nlohmann::json issue = edge::fhir::OperationOutcomeOf(in.status())["issue"][0];
    g.exit_code = FailUsage(absl::StrCat(
        issue.contains("expression") ? issue["expression"][0].get<std::string>() + ": " : "",
        in.status().message()));
    return;
  }
  if (in->actor_user != o.signer.user) {
    g.exit_code = FailUsage(
        absl::StrCat("the Bundle's requester is ", in->actor_user, ", not --user ", o.signer.user));
    return;
  }
  edge::NewReferral r = in->referral;
  r.referral_id = o.id;
  v1::ReferralManifest m = edge::ManifestOf(r, o.signer.sender);
  std::vector<v1::Section> sections = edge::SectionsOf(r);
  v1::SubmitReferralRequest req;
  if (!SealAndSign(g, std::move(sections), {}, &m, o.signer, &req)) return;
  req.set_force_reason(o.force);
  Call<v1::SubmitReferralRequest, v1::SubmitReferralResponse>(g, &v1::ReferralService::Stub::Submit,
                                                              req, PrintSent);
}

}  // namespace

void AddReferralCommands(CLI::App& app, Globals& g) {
  CLI::App* referral = app.add_subcommand("referral", "closed-loop referrals between agencies");
  referral->require_subcommand(1);

  auto send = std::make_shared<SendOpts>();
  CLI::App* s = referral->add_subcommand("send", "send a signed referral (sender role)");
  s->add_option("--fhir", send->fhir,
                "the referral as a FHIR R4 transaction Bundle (Task + ServiceRequest + Patient, "
                "docs/API.md); replaces the flags below but --id and --force-reason");
  s->add_option("--id", send->id, "the referral id, unique for the sender (with --fhir: optional)");
  s->add_option("--subject", send->subject,
                "the person: AUTHORITY=VALUE, e.g. org.stmarys/mrn=000123");
  s->add_option("--service", send->service, "service category, e.g. food-insecurity");
  s->add_option("--reason", send->reason, "coded, non-sensitive reason");
  s->add_option("--priority", send->priority, "routine, urgent, asap, stat")->capture_default_str();
  s->add_option("--purpose", send->purpose, "purpose of use")->capture_default_str();
  s->add_option("--to", send->to, "the recipient agency (else: route by the criteria below)");
  s->add_option("--postal-code", send->postal_code, "criteria: the person's postal code");
  s->add_option("--county", send->county, "criteria: the person's county");
  s->add_option("--language", send->language, "criteria: preferred language");
  s->add_option("--age", send->age, "criteria: the person's age");
  s->add_option("--section", send->sections,
                "ID:CATEGORY:TEXT or ID:CATEGORY:@FILE[:MEDIA-TYPE] (repeatable)");
  s->add_option("--force-reason", send->force, "send despite an open duplicate, and why");
  AddSignFlags(s, send->signer, g);
  s->callback([&g, send] {
    if (!send->fhir.empty()) return SendFhir(g, *send);
    for (const auto& [flag, value] : {std::pair<const char*, bool>{"--id", send->id.empty()},
                                      {"--subject", send->subject.empty()},
                                      {"--service", send->service.empty()},
                                      {"--reason", send->reason.empty()},
                                      {"--section", send->sections.empty()}}) {
      if (value) {
        g.exit_code = FailUsage(absl::StrCat(flag, " is required (or give --fhir)"));
        return;
      }
    }
    v1::ReferralManifest m;
    m.set_referral_id(send->id);
    const size_t eq = send->subject.find('=');
    if (eq == std::string::npos) {
      g.exit_code = FailUsage("--subject takes AUTHORITY=VALUE");
      return;
    }
    m.mutable_subject()->set_authority(send->subject.substr(0, eq));
    m.mutable_subject()->set_value(send->subject.substr(eq + 1));
    m.set_service_category(send->service);
    m.set_reason(send->reason);
    auto p = Priorities().find(send->priority);
    if (p == Priorities().end()) {
      g.exit_code = FailUsage("--priority: routine, urgent, asap or stat");
      return;
    }
    m.set_priority(p->second);
    m.set_purpose(send->purpose);
    if (!send->to.empty()) {
      m.mutable_routing()->set_recipient_agency(send->to);
    } else {
      v1::RoutingCriteria* c = m.mutable_routing()->mutable_criteria();
      c->set_postal_code(send->postal_code);
      c->set_county(send->county);
      c->set_language(send->language);
      c->set_age(send->age);
    }
    v1::SubmitReferralRequest req;
    if (!SealAndSign(g, {}, send->sections, &m, send->signer, &req)) return;
    req.set_force_reason(send->force);
    Call<v1::SubmitReferralRequest, v1::SubmitReferralResponse>(
        g, &v1::ReferralService::Stub::Submit, req, PrintSent);
  });

  for (bool inbox : {true, false}) {
    auto status = std::make_shared<std::string>();
    CLI::App* l = referral->add_subcommand(inbox ? "inbox" : "sent",
                                           inbox ? "referrals sent to you" : "referrals you sent");
    l->add_option("--status", *status, "only this state (requested, accepted, ...)");
    l->callback([&g, status, inbox] {
      v1::ListReferralsRequest req;
      if (!status->empty()) {
        auto st = referral::FromFhirCode(*status);
        if (!st.has_value()) {
          g.exit_code = FailUsage("--status: a referral state such as requested or accepted");
          return;
        }
        req.set_status(*st);
      }
      Call<v1::ListReferralsRequest, v1::ListReferralsResponse>(
          g, inbox ? &v1::ReferralService::Stub::Inbox : &v1::ReferralService::Stub::Sent, req,
          PrintList);
    });
  }

  struct ShowOpts {
    v1::GetReferralRequest req;
    std::string sender_key, directory;
    bool fhir = false;
  };
  auto show = std::make_shared<ShowOpts>();
  CLI::App* sh = referral->add_subcommand(
      "show", "one referral with its history and the sections you may see, checked");
  sh->add_option("--referral", *show->req.mutable_referral(), "SENDER/ID")->required();
  sh->add_option("--sender-key", show->sender_key,
                 "check the signature with this key (PEM) instead of the directory's");
  sh->add_option("--directory-hub", show->directory,
                 "where DirectoryService answers, if not at --hub (split deployments)");
  sh->add_flag("--fhir", show->fhir,
               "print it as the FHIR API shows it: a Bundle of its Task and ServiceRequest");
  sh->callback([&g, show] {
    if (show->fhir) {
      Call<v1::GetReferralRequest, v1::ReferralView>(
          g, &v1::ReferralService::Stub::Get, show->req, [](const v1::ReferralView& v) {
            const nlohmann::json bundle{
                {"resourceType", "Bundle"},
                {"type", "collection"},
                {"entry", nlohmann::json::array(
                              {nlohmann::json{{"resource", edge::fhir::TaskOf(v)}},
                               nlohmann::json{{"resource", edge::fhir::ServiceRequestOf(v)}}})}};
            std::cout << bundle.dump(2) << "\n";
          });
      return;
    }
    Call<v1::GetReferralRequest, v1::ReferralView>(
        g, &v1::ReferralService::Stub::Get, show->req, [&g, show](const v1::ReferralView& v) {
          std::cout << v.referral() << "  " << referral::FhirCode(v.status()) << "  "
                    << v.manifest().service_category() << "  from " << v.sender_agency() << " to "
                    << v.recipient_agency() << "\n  reason: " << v.manifest().reason() << "\n";
          if (!v.outcome().provided().empty())
            std::cout << "  outcome: " << v.outcome().provided() << "\n";
          std::cout << "  history:\n";
          for (const auto& h : v.history()) {
            std::cout << "    " << When(h.at_unix_nanos()) << "  " << h.type() << "  "
                      << (h.status() == v1::TASK_STATUS_UNSPECIFIED
                              ? ""
                              : referral::FhirCode(h.status()))
                      << (h.by_agency().empty() ? "" : "  by " + h.by_agency() + "/" + h.by_user())
                      << (h.reason().code().empty() ? "" : "  (" + h.reason().code() + ")") << "\n";
          }
          for (const auto& sec : v.sections()) {
            std::cout << "  section " << sec.section_id() << " (" << sec.category() << ", "
                      << sec.media_type() << ", " << sec.content().size() << " bytes)";
            if (sec.media_type() == "text/plain") std::cout << ": " << sec.content();
            std::cout << "\n";
          }
          for (const auto& w : v.withheld()) {
            std::cout << "  withheld " << w.section_id() << " (" << w.category()
                      << "): " << w.reason() << "\n";
          }
          for (const auto& t : v.thread()) {
            std::cout << "  message " << When(t.at_unix_nanos()) << " from " << t.by_agency() << "/"
                      << t.by_user() << "\n";
            for (const auto& sec : t.sections()) {
              std::cout << "    " << sec.section_id() << " (" << sec.category() << ")";
              if (sec.media_type() == "text/plain") std::cout << ": " << sec.content();
              std::cout << "\n";
            }
            for (const auto& w : t.withheld())
              std::cout << "    withheld " << w.section_id() << ": " << w.reason() << "\n";
          }
          if (v.delivered_unix_nanos() != 0)
            std::cout << "  delivered to the recipient " << When(v.delivered_unix_nanos()) << "\n";
          if (v.viewed_unix_nanos() != 0)
            std::cout << "  viewed by the recipient " << When(v.viewed_unix_nanos()) << "\n";
          if (!v.redisclosure_notice().empty())
            std::cout << "  NOTICE: " << v.redisclosure_notice() << "\n";
          std::cout << CheckAsRecipient(g, v, show->sender_key, show->directory);
        });
  });

  struct MessageOpts {
    std::string referral, text, text_category = "social-needs";
    std::vector<std::string> sections;
    Signer signer;
  };
  auto msg = std::make_shared<MessageOpts>();
  CLI::App* mc = referral->add_subcommand(
      "message", "write in a referral's thread (its sender or current recipient; signed)");
  mc->add_option("--referral", msg->referral, "SENDER/ID")->required();
  mc->add_option("--text", msg->text, "the message text (a text/plain section)");
  mc->add_option("--text-category", msg->text_category, "the data category of the text")
      ->capture_default_str();
  mc->add_option("--section", msg->sections, "ID:CATEGORY:TEXT or ID:CATEGORY:@FILE (repeatable)");
  AddSignFlags(mc, msg->signer, g);
  mc->callback([&g, msg] {
    const size_t slash = msg->referral.find('/');
    if (slash == std::string::npos || (msg->text.empty() && msg->sections.empty())) {
      g.exit_code = FailUsage("give --referral SENDER/ID and --text or --section");
      return;
    }
    std::vector<v1::Section> sections;
    if (!msg->text.empty()) {
      v1::Section t;
      t.set_section_id("text");
      t.set_category(msg->text_category);
      t.set_media_type("text/plain");
      t.set_content(msg->text);
      sections.push_back(t);
    }
    v1::ReferralMessage m;
    m.set_sender_agency(msg->referral.substr(0, slash));
    m.set_referral_id(msg->referral.substr(slash + 1));
    v1::PostMessageRequest req;
    if (!SealAndSign(g, sections, msg->sections, &m, msg->signer, &req)) return;
    Call<v1::PostMessageRequest, v1::PostMessageResponse>(
        g, &v1::ReferralService::Stub::PostMessage, req, [](const v1::PostMessageResponse& r) {
          v1::EventHeader h;
          h.ParseFromString(r.receipt().header_bytes());
          std::cout << "posted (seq " << h.seq() << ")\n";
          for (const auto& w : r.withheld()) {
            std::cout << "  withheld " << w.section_id() << " (" << w.category()
                      << "): " << w.reason() << "\n";
          }
        });
  });

  struct UpdateOpts {
    std::string referral, status, code, text, provided, enrolment;
    Signer signer;
  };
  struct Verb {
    const char* name;
    const char* help;
    v1::TaskStatus status;  // TASK_STATUS_UNSPECIFIED: from --status
  };
  for (const Verb& verb : std::vector<Verb>{
           {"accept", "accept a referral sent to you (receiver)", v1::TASK_ACCEPTED},
           {"decline", "decline it with a reason code and text (receiver)", v1::TASK_REJECTED},
           {"complete", "complete it with what was provided (receiver)", v1::TASK_COMPLETED},
           {"cancel", "cancel a referral you sent, with a reason (sender)", v1::TASK_CANCELLED},
           {"update", "any other move: in-progress, on-hold, failed, entered-in-error",
            v1::TASK_STATUS_UNSPECIFIED}}) {
    auto o = std::make_shared<UpdateOpts>();
    CLI::App* c = referral->add_subcommand(verb.name, verb.help);
    c->add_option("--referral", o->referral, "SENDER/ID")->required();
    if (verb.status == v1::TASK_STATUS_UNSPECIFIED)
      c->add_option("--status", o->status, "the new state")->required();
    c->add_option("--reason-code", o->code,
                  "no-capacity, not-eligible, out-of-area, service-not-offered, unable-to-contact, "
                  "declined-by-subject, duplicate, other");
    c->add_option("--reason-text", o->text, "the reason, for people");
    if (verb.status == v1::TASK_COMPLETED || verb.status == v1::TASK_STATUS_UNSPECIFIED) {
      c->add_option("--provided", o->provided, "what was provided (completed)");
      c->add_option("--enrolment", o->enrolment, "enrolled, waitlisted, ...");
    }
    AddSignFlags(c, o->signer, g);
    const v1::TaskStatus fixed = verb.status;
    c->callback([&g, o, fixed] {
      const size_t slash = o->referral.find('/');
      if (slash == std::string::npos) {
        g.exit_code = FailUsage("--referral takes SENDER/ID");
        return;
      }
      v1::UpdateReferralStatus u;
      u.set_sender_agency(o->referral.substr(0, slash));
      u.set_referral_id(o->referral.substr(slash + 1));
      v1::TaskStatus to = fixed;
      if (to == v1::TASK_STATUS_UNSPECIFIED) {
        auto st = referral::FromFhirCode(o->status);
        if (!st.has_value()) {
          g.exit_code = FailUsage("--status: in-progress, on-hold, failed, entered-in-error, ...");
          return;
        }
        to = *st;
      }
      u.set_status(to);
      u.mutable_reason()->set_code(o->code);
      u.mutable_reason()->set_text(o->text);
      u.mutable_outcome()->set_provided(o->provided);
      u.mutable_outcome()->set_enrolment_status(o->enrolment);
      absl::StatusOr<std::string> envelope = Sign(u, o->signer);
      if (!envelope.ok()) {
        g.exit_code = FailUsage(std::string(envelope.status().message()));
        return;
      }
      v1::SubmitEnvelopeRequest req;
      req.set_envelope(*envelope);
      Call<v1::SubmitEnvelopeRequest, v1::Receipt>(
          g, &v1::ReferralService::Stub::UpdateStatus, req, [to](const v1::Receipt& r) {
            v1::EventHeader h;
            h.ParseFromString(r.header_bytes());
            std::cout << "referral is now " << referral::FhirCode(to) << " (seq " << h.seq()
                      << ")\n";
          });
    });
  }
}

}  // namespace careloop::cli
