// careloop subject resolve|link|merge|unmerge and
// careloop consent grant|amend|revoke|show|list|check|report|break-glass|review|reviews.
// Changes are signed envelopes (the signer flags of every change command);
// reads are limited by the hub to who may see them (docs/SECURITY.md).
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/sha256.h"
#include "base/status.h"
#include "careloop/v1/consent.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "services/consent/report.h"
#include "services/edge/fhir_api.h"
#include "services/edge/fhir_consent.h"
#include "tools/careloop/cli.h"

namespace careloop::cli {
namespace {

template <typename Req, typename Resp, typename Method, typename TextFn>
void Call(Globals& g, Method method, const Req& req, TextFn text) {
  CallUnary<v1::ConsentService, Req, Resp>(g, method, req, text);
}

absl::StatusOr<v1::Identifier> ParseIdentifier(const std::string& text) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return absl::InvalidArgumentError("--id takes AUTHORITY=VALUE, e.g. org.stmarys/mrn=000123");
  }
  v1::Identifier id;
  id.set_authority(text.substr(0, eq));
  id.set_value(text.substr(eq + 1));
  return id;
}

// What a consent says, from flags or from a JSON file (a careloop.v1.Consent).
struct ConsentFlags {
  std::string fhir_file;  // a FHIR R4 Consent instead
  std::string file, subject, grantor = "subject", relationship, from, until, evidence_file,
                             evidence_type = "application/pdf";
  std::vector<std::string> agencies, kinds, purposes, categories, deny_agencies, deny_categories;
  bool network = false, hipaa_authorization = false;
  std::string part2_who, part2_information, part2_recipients, part2_purpose, part2_expiration,
      part2_signed_at;
  bool part2_right_to_revoke = false;
};

void AddConsentFlags(CLI::App* cmd, ConsentFlags& f, bool with_subject) {
  cmd->add_option("--file", f.file, "the consent as JSON (careloop.v1.Consent); flags add to it");
  cmd->add_option("--fhir", f.fhir_file,
                  "the consent as a FHIR R4 Consent (docs/API.md); with --subject and, when "
                  "the resource carries no signed form, --evidence-file")
      ->excludes("--file");
  if (with_subject) cmd->add_option("--subject", f.subject, "the subject id");
  cmd->add_option("--grantor", f.grantor, "subject, guardian or representative")
      ->capture_default_str();
  cmd->add_option("--relationship", f.relationship,
                  "a guardian's or representative's relationship");
  cmd->add_option("--recipient-agency", f.agencies, "an agency it permits (repeatable)");
  cmd->add_option("--recipient-kind", f.kinds,
                  "every agency of a kind: hospital, community-agency, ... (repeatable)");
  cmd->add_flag("--network", f.network, "every agency on the network");
  cmd->add_option("--purpose", f.purposes,
                  "care-coordination, treatment, payment, operations, research, ... (repeatable)");
  cmd->add_option("--category", f.categories,
                  "data category (repeatable; none: every non-sensitive category)");
  cmd->add_option("--deny-agency", f.deny_agencies, "an exception: never this agency (repeatable)");
  cmd->add_option("--deny-category", f.deny_categories,
                  "an exception: never this category (repeatable)");
  cmd->add_option("--from", f.from, "valid from (RFC 3339; default: now)");
  cmd->add_option("--until", f.until, "valid until, exclusive (RFC 3339; default: no end)");
  cmd->add_option("--evidence-file", f.evidence_file, "the signed form (its SHA-256 is recorded)");
  cmd->add_option("--evidence-type", f.evidence_type, "the form's media type")
      ->capture_default_str();
  cmd->add_flag("--hipaa-authorization", f.hipaa_authorization,
                "a HIPAA authorization (45 CFR 164.508)");
  cmd->add_option("--part2-who", f.part2_who, "42 CFR 2.31: who may disclose");
  cmd->add_option("--part2-information", f.part2_information, "2.31: what information");
  cmd->add_option("--part2-recipients", f.part2_recipients, "2.31: to whom");
  cmd->add_option("--part2-purpose", f.part2_purpose, "2.31: for what purpose");
  cmd->add_option("--part2-expiration", f.part2_expiration,
                  "2.31: expiry date, event or condition");
  cmd->add_flag("--part2-right-to-revoke", f.part2_right_to_revoke,
                "2.31: the right to revoke was explained");
  cmd->add_option("--part2-signed-at", f.part2_signed_at, "2.31: when the form was signed");
}

// A FHIR Consent, read as the edge's FHIR API reads one (what careloop
// cannot record is refused naming the element).
absl::StatusOr<v1::Consent> FromFhir(const ConsentFlags& f) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(f.fhir_file));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(f.fhir_file + " is not JSON");
  edge::fhir::ConsentEvidence evidence;
  if (!f.evidence_file.empty()) {
    ASSIGN_OR_RETURN(std::string form, ReadFile(f.evidence_file));
    evidence = {ToBytes(Sha256(form)), f.evidence_type};
  }
  absl::StatusOr<v1::Consent> c = edge::fhir::ReadFhirConsent(j, edge::fhir::Entries(), evidence);
  if (!c.ok()) {
    const nlohmann::json outcome = edge::fhir::OperationOutcomeOf(c.status());
    const auto& issue = outcome["issue"][0];
    return absl::Status(
        c.status().code(),
        absl::StrCat(
            issue.contains("expression") ? issue["expression"][0].get<std::string>() + ": " : "",
            c.status().message()));
  }
  c->set_subject_id(f.subject);
  return c;
}

absl::StatusOr<v1::Consent> ToConsent(const ConsentFlags& f) {
  if (!f.fhir_file.empty()) return FromFhir(f);
  v1::Consent c;
  if (!f.file.empty()) {
    absl::StatusOr<std::string> json = ReadFile(f.file);
    if (!json.ok()) return json.status();
    if (absl::Status s = FromJson(*json, &c); !s.ok()) return s;
  }
  if (!f.subject.empty()) c.set_subject_id(f.subject);
  static const std::map<std::string, v1::GrantorKind> grantors = {
      {"subject", v1::GRANTOR_SUBJECT},
      {"guardian", v1::GRANTOR_PARENT_GUARDIAN},
      {"representative", v1::GRANTOR_LEGAL_REPRESENTATIVE}};
  if (f.file.empty() || c.grantor().kind() == v1::GRANTOR_KIND_UNSPECIFIED) {
    auto g = grantors.find(f.grantor);
    if (g == grantors.end())
      return absl::InvalidArgumentError("--grantor: subject, guardian or representative");
    c.mutable_grantor()->set_kind(g->second);
  }
  if (!f.relationship.empty()) c.mutable_grantor()->set_relationship(f.relationship);
  v1::ConsentRule* root = c.mutable_provision();
  root->set_permit(true);
  for (const std::string& a : f.agencies) root->add_recipients()->set_agency_id(a);
  for (const std::string& k : f.kinds) {
    auto it = Kinds().find(k);
    if (it == Kinds().end())
      return absl::InvalidArgumentError(absl::StrCat("--recipient-kind: unknown kind '", k, "'"));
    root->add_recipients()->set_agency_kind(it->second);
  }
  if (f.network) root->add_recipients()->set_network(true);
  for (const std::string& p : f.purposes) root->add_purposes(p);
  for (const std::string& cat : f.categories) root->add_categories(cat);
  for (const std::string& a : f.deny_agencies) {
    v1::ConsentRule* deny = root->add_exceptions();
    deny->add_recipients()->set_agency_id(a);
  }
  for (const std::string& cat : f.deny_categories) root->add_exceptions()->add_categories(cat);
  absl::StatusOr<int64_t> from = ParseInstant(f.from, "--from");
  absl::StatusOr<int64_t> until = ParseInstant(f.until, "--until");
  if (!from.ok()) return from.status();
  if (!until.ok()) return until.status();
  if (*from != 0) c.mutable_period()->set_start_unix_nanos(*from);
  if (*until != 0) c.mutable_period()->set_end_unix_nanos(*until);
  if (!f.evidence_file.empty()) {
    absl::StatusOr<std::string> form = ReadFile(f.evidence_file);
    if (!form.ok()) return form.status();
    c.mutable_evidence()->set_sha256(ToBytes(Sha256(*form)));
    c.mutable_evidence()->set_media_type(f.evidence_type);
  }
  if (f.hipaa_authorization) c.set_hipaa_authorization(true);
  v1::Part2Elements* p2 = c.mutable_part2();
  if (!f.part2_who.empty()) p2->set_who_may_disclose(f.part2_who);
  if (!f.part2_information.empty()) p2->set_information_description(f.part2_information);
  if (!f.part2_recipients.empty()) p2->set_recipients_description(f.part2_recipients);
  if (!f.part2_purpose.empty()) p2->set_purpose_description(f.part2_purpose);
  if (!f.part2_expiration.empty()) p2->set_expiration(f.part2_expiration);
  if (f.part2_right_to_revoke) p2->set_right_to_revoke_acknowledged(true);
  absl::StatusOr<int64_t> signed_at = ParseInstant(f.part2_signed_at, "--part2-signed-at");
  if (!signed_at.ok()) return signed_at.status();
  if (*signed_at != 0) {
    p2->set_signed_(true);
    p2->set_signed_unix_nanos(*signed_at);
  }
  return c;
}

void PrintRule(const v1::ConsentRule& r, int depth) {
  std::string who;
  for (const auto& s : r.recipients()) {
    if (!who.empty()) who += ",";
    if (s.has_agency_id()) who += s.agency_id();
    if (s.has_agency_kind()) who += "kind:" + v1::AgencyKind_Name(s.agency_kind());
    if (s.has_network()) who += "network";
  }
  std::cout << std::string(2 * depth + 2, ' ') << (r.permit() ? "permit" : "deny")
            << " to=" << (who.empty() ? "*" : who)
            << " purposes=" << (r.purposes().empty() ? "*" : absl::StrJoin(r.purposes(), ","))
            << " categories="
            << (r.categories().empty() ? "*(non-sensitive)" : absl::StrJoin(r.categories(), ","))
            << "\n";
  for (const auto& ex : r.exceptions()) PrintRule(ex, depth + 1);
}

void PrintConsent(const v1::ConsentRecord& r) {
  const v1::Consent& c = r.consent();
  std::cout << c.consent_id() << "  " << v1::ConsentStatus_Name(c.status()) << "  subject "
            << c.subject_id() << "  recorded by " << c.recording_agency() << "/"
            << c.recording_actor() << "  grantor " << v1::GrantorKind_Name(c.grantor().kind())
            << (c.grantor().relationship().empty() ? "" : " (" + c.grantor().relationship() + ")")
            << "\n  valid " << When(c.period().start_unix_nanos()) << " to "
            << When(c.period().end_unix_nanos())
            << (c.revoked_unix_nanos()
                    ? "  revoked " + When(c.revoked_unix_nanos()) + " by " + r.revoked_by_agency() +
                          "/" + r.revoked_by_user() + ": " + c.revocation_reason()
                    : "")
            << (c.hipaa_authorization() ? "  HIPAA authorization" : "") << "\n";
  PrintRule(c.provision(), 0);
  if (!r.holders().empty()) std::cout << "  held by: " << absl::StrJoin(r.holders(), ", ") << "\n";
}

void AddSubjectCommands(CLI::App& app, Globals& g) {
  CLI::App* subject = app.add_subcommand("subject", "people: hub ids linked to agencies' ids");
  subject->require_subcommand(1);

  auto ids = std::make_shared<std::vector<std::string>>();
  CLI::App* resolve = subject->add_subcommand(
      "resolve", "the subject of one person's identifiers (created on first use)");
  resolve->add_option("--id", *ids, "AUTHORITY=VALUE, e.g. org.stmarys/mrn=000123 (repeatable)")
      ->required();
  resolve->callback([&g, ids] {
    v1::ResolveSubjectRequest req;
    for (const std::string& text : *ids) {
      absl::StatusOr<v1::Identifier> id = ParseIdentifier(text);
      if (!id.ok()) {
        g.exit_code = FailUsage(std::string(id.status().message()));
        return;
      }
      *req.add_identifiers() = *id;
    }
    Call<v1::ResolveSubjectRequest, v1::ResolveSubjectResponse>(
        g, &v1::ConsentService::Stub::ResolveSubject, req,
        [](const v1::ResolveSubjectResponse& r) { std::cout << r.subject_id() << "\n"; });
  });

  struct LinkOpts {
    std::string subject, id, reason;
    Signer signer;
  };
  auto link = std::make_shared<LinkOpts>();
  CLI::App* l = subject->add_subcommand("link", "an identifier is this subject (signed)");
  l->add_option("--subject", link->subject, "the subject id")->required();
  l->add_option("--id", link->id, "AUTHORITY=VALUE")->required();
  l->add_option("--reason", link->reason, "why");
  AddSignFlags(l, link->signer, g);
  l->callback([&g, link] {
    absl::StatusOr<v1::Identifier> id = ParseIdentifier(link->id);
    if (!id.ok()) {
      g.exit_code = FailUsage(std::string(id.status().message()));
      return;
    }
    v1::LinkIdentifier p;
    p.set_subject_id(link->subject);
    *p.mutable_identifier() = *id;
    p.set_reason(link->reason);
    Submit(g, p, link->signer);
  });

  // merge and unmerge: the same three fields, two payloads.
  auto pair_command = [&](const char* name, const char* help, const char* survivor_help,
                          const char* merged_help, auto payload) {
    struct Opts {
      std::string survivor, merged, reason;
      Signer signer;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* c = subject->add_subcommand(name, help);
    c->add_option("--survivor", o->survivor, survivor_help)->required();
    c->add_option("--merged", o->merged, merged_help)->required();
    c->add_option("--reason", o->reason, "why")->required();
    AddSignFlags(c, o->signer, g);
    c->callback([&g, o, payload] {
      decltype(payload) p;
      p.set_surviving_subject_id(o->survivor);
      p.set_merged_subject_id(o->merged);
      p.set_reason(o->reason);
      Submit(g, p, o->signer);
    });
  };
  pair_command("merge", "two subjects were one person (signed)", "the id that remains",
               "the id merged into it", v1::MergeSubjects());
  pair_command("unmerge", "undo a wrong merge, keeping its history (compliance, signed)",
               "the id it was merged into", "the id to stand on its own again",
               v1::UnmergeSubjects());
}

}  // namespace

void AddConsentCommands(CLI::App& app, Globals& g) {
  AddSubjectCommands(app, g);
  CLI::App* consent = app.add_subcommand("consent", "consents, decisions, disclosure reports");
  consent->require_subcommand(1);

  struct GrantOpts {
    ConsentFlags flags;
    Signer signer;
  };
  auto grant = std::make_shared<GrantOpts>();
  CLI::App* gr =
      consent->add_subcommand("grant", "record a consent (signed by the recording agency)");
  AddConsentFlags(gr, grant->flags, /*with_subject=*/true);
  AddSignFlags(gr, grant->signer, g);
  gr->callback([&g, grant] {
    absl::StatusOr<v1::Consent> c = ToConsent(grant->flags);
    if (!c.ok()) {
      g.exit_code = FailUsage(std::string(c.status().message()));
      return;
    }
    v1::GrantConsent p;
    *p.mutable_consent() = *c;
    Submit(g, p, grant->signer);
  });

  struct AmendOpts {
    std::string consent_id, reason;
    ConsentFlags flags;
    Signer signer;
  };
  auto amend = std::make_shared<AmendOpts>();
  CLI::App* am = consent->add_subcommand(
      "amend", "replace what a consent permits (the recording agency; signed)");
  am->add_option("--consent", amend->consent_id, "the consent id")->required();
  am->add_option("--reason", amend->reason, "why");
  AddConsentFlags(am, amend->flags, /*with_subject=*/false);
  AddSignFlags(am, amend->signer, g);
  am->callback([&g, amend] {
    absl::StatusOr<v1::Consent> c = ToConsent(amend->flags);
    if (!c.ok()) {
      g.exit_code = FailUsage(std::string(c.status().message()));
      return;
    }
    v1::AmendConsent p;
    p.set_consent_id(amend->consent_id);
    *p.mutable_consent() = *c;
    p.set_reason(amend->reason);
    Submit(g, p, amend->signer);
  });

  struct RevokeOpts {
    std::string consent_id, reason;
    bool entered_in_error = false;
    Signer signer;
  };
  auto revoke = std::make_shared<RevokeOpts>();
  CLI::App* rv = consent->add_subcommand(
      "revoke", "revoke a consent from now on (recording agency or compliance; signed)");
  rv->add_option("--consent", revoke->consent_id, "the consent id")->required();
  rv->add_option("--reason", revoke->reason, "why (recorded)")->required();
  rv->add_flag("--entered-in-error", revoke->entered_in_error,
               "it was recorded by mistake and never applied");
  AddSignFlags(rv, revoke->signer, g);
  rv->callback([&g, revoke] {
    v1::RevokeConsent p;
    p.set_consent_id(revoke->consent_id);
    p.set_reason(revoke->reason);
    p.set_entered_in_error(revoke->entered_in_error);
    Submit(g, p, revoke->signer);
  });

  auto show = std::make_shared<v1::GetConsentRequest>();
  CLI::App* sh = consent->add_subcommand("show", "one consent");
  sh->add_option("--consent", *show->mutable_consent_id(), "the consent id")->required();
  sh->callback([&g, show] {
    Call<v1::GetConsentRequest, v1::ConsentRecord>(g, &v1::ConsentService::Stub::GetConsent, *show,
                                                   PrintConsent);
  });

  auto list = std::make_shared<v1::ListConsentsRequest>();
  CLI::App* ls = consent->add_subcommand("list", "a subject's consents that you may see");
  ls->add_option("--subject", *list->mutable_subject_id(), "the subject id")->required();
  ls->callback([&g, list] {
    Call<v1::ListConsentsRequest, v1::ListConsentsResponse>(
        g, &v1::ConsentService::Stub::ListConsents, *list, [](const v1::ListConsentsResponse& r) {
          std::cout << "subject " << r.subject_id() << ": " << r.consents_size() << " consent(s)\n";
          for (const auto& c : r.consents()) PrintConsent(c);
        });
  });

  struct CheckOpts {
    v1::CheckConsentRequest req;
    std::vector<std::string> categories;
    std::string at;
  };
  auto check = std::make_shared<CheckOpts>();
  CLI::App* ck = consent->add_subcommand(
      "check", "may these categories go to an agency for a purpose? (compliance, the hub)");
  ck->add_option("--subject", *check->req.mutable_subject_id(), "the subject id")->required();
  ck->add_option("--recipient", *check->req.mutable_recipient_agency(), "the agency")->required();
  ck->add_option("--purpose", *check->req.mutable_purpose(), "the purpose")->required();
  ck->add_option("--category", check->categories, "data category (repeatable)")->required();
  ck->add_option("--at", check->at, "decide for this instant (RFC 3339; default now)");
  ck->callback([&g, check] {
    absl::StatusOr<int64_t> at = ParseInstant(check->at, "--at");
    if (!at.ok()) {
      g.exit_code = FailUsage(std::string(at.status().message()));
      return;
    }
    check->req.set_at_unix_nanos(*at);
    for (const std::string& c : check->categories) check->req.add_categories(c);
    Call<v1::CheckConsentRequest, v1::CheckConsentResponse>(
        g, &v1::ConsentService::Stub::Check, check->req, [](const v1::CheckConsentResponse& r) {
          for (const auto& d : r.decisions()) {
            std::cout << (d.permit() ? "PERMIT " : "DENY   ") << d.category() << "  " << d.reason()
                      << "\n";
          }
          std::cout << "read:";
          for (const auto& v : r.read_versions())
            std::cout << " " << v.stream() << "@" << v.version();
          std::cout << "\n";
        });
  });

  struct ReportOpts {
    v1::DisclosureReportRequest req;
    std::string from, to;
    bool csv = false, hipaa = false, summarize = false;
  };
  auto report = std::make_shared<ReportOpts>();
  CLI::App* rp = consent->add_subcommand(
      "report",
      "every disclosure about a subject (compliance): text for the person, --csv, --json");
  rp->add_option("--subject", *report->req.mutable_subject_id(), "the subject id")->required();
  rp->add_option("--from", report->from, "from (RFC 3339; default six years before --to)");
  rp->add_option("--to", report->to, "to (RFC 3339; default now)");
  rp->add_flag("--hipaa-accounting", report->hipaa,
               "the 45 CFR 164.528 accounting (leaves out treatment, payment, operations and "
               "authorized disclosures; docs/API.md)");
  rp->add_flag("--summarize", report->summarize,
               "one entry per recipient and purpose: the first, the count, the last date");
  rp->add_flag("--csv", report->csv, "CSV instead of text");
  rp->callback([&g, report] {
    int64_t from = 0, to = 0;
    if (!ParseRange(g, report->from, report->to, &from, &to)) return;
    report->req.set_hipaa_accounting(report->hipaa);
    report->req.set_summarize(report->summarize);
    report->req.set_from_unix_nanos(from);
    report->req.set_to_unix_nanos(to);
    const bool csv = report->csv;
    Call<v1::DisclosureReportRequest, v1::DisclosureReportResponse>(
        g, &v1::ConsentService::Stub::DisclosureReport, report->req,
        [csv](const v1::DisclosureReportResponse& r) {
          std::cout << (csv ? consent::ReportCsv(r) : consent::ReportText(r));
        });
  });

  struct BreakGlassOpts {
    std::string subject, purpose = "emergency-treatment", reason, duration;
    std::vector<std::string> categories;
    Signer signer;
  };
  auto bg = std::make_shared<BreakGlassOpts>();
  CLI::App* b = consent->add_subcommand(
      "break-glass", "medical emergency: override a deny for a limited time (emergency role)");
  b->add_option("--subject", bg->subject, "the subject id")->required();
  b->add_option("--category", bg->categories, "data category (repeatable)")->required();
  b->add_option("--purpose", bg->purpose, "the purpose")->capture_default_str();
  b->add_option("--reason", bg->reason, "the emergency (recorded, reviewed)")->required();
  b->add_option("--duration", bg->duration, "how long, e.g. 30m (default: the hub's, 1h)");
  AddSignFlags(b, bg->signer, g);
  b->callback([&g, bg] {
    v1::BreakGlass p;
    p.set_subject_id(bg->subject);
    for (const std::string& c : bg->categories) p.add_categories(c);
    p.set_purpose(bg->purpose);
    p.set_reason(bg->reason);
    if (!bg->duration.empty()) {
      absl::Duration d;
      if (!absl::ParseDuration(bg->duration, &d)) {
        g.exit_code = FailUsage("--duration: e.g. 30m or 1h");
        return;
      }
      p.set_duration_seconds(absl::ToInt64Seconds(d));
    }
    Submit(g, p, bg->signer);
  });

  struct ReviewOpts {
    std::string id, notes;
    bool appropriate = false, inappropriate = false;
    Signer signer;
  };
  auto review = std::make_shared<ReviewOpts>();
  CLI::App* rvw =
      consent->add_subcommand("review", "close a break-glass use with a finding (compliance)");
  rvw->add_option("--break-glass", review->id, "the break-glass id")->required();
  rvw->add_flag("--appropriate", review->appropriate, "the use was justified");
  rvw->add_flag("--inappropriate", review->inappropriate, "the use was not justified");
  rvw->add_option("--notes", review->notes, "the finding");
  AddSignFlags(rvw, review->signer, g);
  rvw->callback([&g, review] {
    if (review->appropriate == review->inappropriate) {
      g.exit_code = FailUsage("give exactly one of --appropriate and --inappropriate");
      return;
    }
    v1::ReviewBreakGlass p;
    p.set_break_glass_id(review->id);
    p.set_appropriate(review->appropriate);
    p.set_notes(review->notes);
    Submit(g, p, review->signer);
  });

  auto include_reviewed = std::make_shared<bool>(false);
  CLI::App* rl =
      consent->add_subcommand("reviews", "break-glass uses awaiting review (compliance)");
  rl->add_flag("--all", *include_reviewed, "also the reviewed ones");
  rl->callback([&g, include_reviewed] {
    v1::ListBreakGlassRequest req;
    req.set_include_reviewed(*include_reviewed);
    Call<v1::ListBreakGlassRequest, v1::ListBreakGlassResponse>(
        g, &v1::ConsentService::Stub::ListBreakGlass, req, [](const v1::ListBreakGlassResponse& r) {
          if (r.records().empty()) std::cout << "no break-glass uses to review\n";
          for (const auto& u : r.records()) {
            std::cout << u.break_glass_id() << "  " << u.agency_id() << "/" << u.user_id()
                      << "  subject " << u.subject_id() << "  "
                      << absl::StrJoin(u.categories(), ",") << "  " << When(u.from_unix_nanos())
                      << " to " << When(u.until_unix_nanos()) << "  "
                      << (u.reviewed() ? (u.appropriate() ? "reviewed: appropriate"
                                                          : "reviewed: NOT appropriate")
                                       : "OPEN")
                      << "\n  reason: " << u.reason() << "\n";
          }
        });
  });
}

}  // namespace careloop::cli
