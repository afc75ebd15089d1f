#include "services/edge/privacy_desk.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file.h"
#include "base/status.h"
#include "services/trust/head_signer.h"
#include "storage/validate.h"

namespace careloop::edge {

namespace {

constexpr char kComplianceRole[] = "compliance";
constexpr size_t kMaxNotes = 2000;
constexpr size_t kMaxBundleBytes = 64 << 20;

// The red state's evidence, beside the monitor's state file.
std::string AlertPath(const std::string& state) { return state + ".alert"; }

}  // namespace

PrivacyDesk::PrivacyDesk(HubClient* hub, Signer* signer, Clock* clock, std::string verifier_key,
                         std::string state_path)
    : hub_(hub),
      signer_(signer),
      clock_(clock),
      monitor_(std::move(verifier_key), std::move(state_path)) {}

absl::StatusOr<std::string> PrivacyDesk::FindPerson(const StaffMember& who,
                                                    const std::string& agency,
                                                    const std::string& mrn) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  RETURN_IF_ERROR(storage::ValidateAgencyId(agency));
  if (mrn.empty()) return absl::InvalidArgumentError("give the record number");
  v1::ResolveSubjectRequest req;
  v1::Identifier* id = req.add_identifiers();
  id->set_authority(absl::StrCat(agency, "/mrn"));
  id->set_value(mrn);
  ASSIGN_OR_RETURN(v1::ResolveSubjectResponse r, hub_->ResolveSubject(req, ActingOf(who)));
  return r.subject_id();
}

absl::StatusOr<v1::DisclosureReportResponse> PrivacyDesk::Report(const StaffMember& who,
                                                                 const std::string& subject,
                                                                 int64_t from_unix_nanos,
                                                                 int64_t to_unix_nanos,
                                                                 bool hipaa) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  v1::DisclosureReportRequest req;
  req.set_subject_id(subject);
  req.set_from_unix_nanos(from_unix_nanos);
  req.set_to_unix_nanos(to_unix_nanos);
  req.set_hipaa_accounting(hipaa);
  return hub_->Report(req, ActingOf(who));
}

absl::StatusOr<v1::TrailResponse> PrivacyDesk::Trail(const StaffMember& who,
                                                     const std::string& subject) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  v1::TrailRequest req;
  req.set_subject_id(subject);
  return hub_->Trail(req, ActingOf(who));
}

absl::StatusOr<v1::AccessResponse> PrivacyDesk::Access(const StaffMember& who,
                                                       const v1::AccessRequest& req) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  return hub_->Access(req, ActingOf(who));
}

absl::StatusOr<v1::ListBreakGlassResponse> PrivacyDesk::BreakGlass(const StaffMember& who,
                                                                   bool include_reviewed) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  v1::ListBreakGlassRequest req;
  req.set_include_reviewed(include_reviewed);
  return hub_->ListBreakGlass(req, ActingOf(who));
}

absl::Status PrivacyDesk::Review(const StaffMember& who, const std::string& break_glass_id,
                                 bool appropriate, const std::string& notes) {
  RETURN_IF_ERROR(storage::ValidateToken(break_glass_id, "break-glass id"));
  if (notes.empty()) return absl::InvalidArgumentError("write what the review found");
  if (notes.size() > kMaxNotes)
    return absl::InvalidArgumentError(absl::StrCat("notes are at most ", kMaxNotes, " bytes"));
  v1::ReviewBreakGlass r;
  r.set_break_glass_id(break_glass_id);
  r.set_appropriate(appropriate);
  r.set_notes(notes);
  ASSIGN_OR_RETURN(std::string envelope, signer_->Sign(who, r, kComplianceRole));
  return hub_->SubmitConsentChange(envelope).status();
}

absl::StatusOr<v1::ExportResponse> PrivacyDesk::Export(const StaffMember& who,
                                                       const v1::ExportRequest& req) {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  return hub_->Export(req, ActingOf(who));
}

absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> LogMonitor::Verifier() const {
  if (verifier_key_.empty()) {
    return absl::FailedPreconditionError(
        "this edge has no verifier key for the hub's log (hub-log.vkey)");
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<trust::Ed25519NoteVerifier> v,
      trust::Ed25519NoteVerifier::FromVerifierKey(absl::StripAsciiWhitespace(verifier_key_)));
  return std::unique_ptr<storage::NoteVerifier>(std::move(v));
}

absl::StatusOr<audit::BundleReport> PrivacyDesk::VerifyBundle(const StaffMember& who,
                                                              const std::string& jsonl) const {
  RETURN_IF_ERROR(RequireRole(who, kComplianceRole));
  if (jsonl.size() > kMaxBundleBytes)
    return absl::InvalidArgumentError("the bundle is larger than 64 MiB");
  ASSIGN_OR_RETURN(std::unique_ptr<storage::NoteVerifier> key, monitor_.Verifier());
  absl::StatusOr<v1::ExportResponse> bundle = audit::ParseBundle(jsonl);
  if (!bundle.ok()) {
    // A line that does not parse is a bad line like any other.
    audit::BundleReport r;
    r.problem = std::string(bundle.status().message());
    return r;
  }
  return audit::VerifyBundle(*bundle, *key);
}

absl::StatusOr<v1::FiguresResponse> PrivacyDesk::Figures(const StaffMember& who,
                                                         const v1::FiguresRequest& req) {
  if (who.disabled) return absl::PermissionDeniedError("this account is disabled");
  return hub_->Figures(req, ActingOf(who));
}

absl::StatusOr<Integrity> PrivacyDesk::CheckIntegrity(const StaffMember& who) {
  if (who.disabled) return absl::PermissionDeniedError("this account is disabled");
  const Acting acting = ActingOf(who);
  return monitor_.Check(
      [&] { return hub_->Head(v1::AuditHeadRequest(), acting); },
      [&](uint64_t size1, uint64_t size2) -> absl::StatusOr<v1::ConsistencyProof> {
        v1::AuditConsistencyRequest req;
        req.set_size1(size1);
        req.set_size2(size2);
        ASSIGN_OR_RETURN(v1::AuditConsistencyResponse c, hub_->Consistency(req, acting));
        return c.proof();
      },
      absl::ToUnixNanos(clock_->Now()));
}

absl::StatusOr<Integrity> LogMonitor::Check(const HeadFn& head_fn, const ProofFn& proof_fn,
                                            int64_t now_unix_nanos) {
  absl::MutexLock lock(&mu_);
  Integrity out;
  out.checked_unix_nanos = now_unix_nanos;
  ASSIGN_OR_RETURN(v1::SignedHead head, head_fn());
  out.log_id = head.log_id();
  out.tree_size = head.tree_size();
  out.signed_unix_nanos = head.time_unix_nanos();
  absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> key = Verifier();
  if (!key.ok()) {
    out.problem = std::string(key.status().message());
    return out;
  }
  out.known = true;
  // Red stays red: the first alarm is the evidence.
  if (absl::StatusOr<std::string> alert = ReadFile(AlertPath(state_path_)); alert.ok()) {
    out.problem = *alert;
    return out;
  }
  std::optional<audit::MonitorState> last;
  if (absl::StatusOr<std::string> text = ReadFile(state_path_); text.ok()) {
    ASSIGN_OR_RETURN(last, audit::MonitorStateFromText(*text));
  }
  v1::ConsistencyProof proof;
  if (last && head.tree_size() > last->tree_size && head.log_id() == last->log_id) {
    ASSIGN_OR_RETURN(proof, proof_fn(last->tree_size, head.tree_size()));
  }
  audit::MonitorResult r = audit::CheckHead(last, head, proof, **key);
  if (!r.ok) {
    out.problem = r.problem;
    RETURN_IF_ERROR(WriteFileAtomically(AlertPath(state_path_), r.problem, 0600));
    return out;
  }
  RETURN_IF_ERROR(WriteFileAtomically(state_path_, audit::MonitorStateToText(r.next), 0600));
  out.ok = true;
  return out;
}

}  // namespace careloop::edge
