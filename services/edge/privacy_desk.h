// The compliance desk and the figures (DESIGN.md, "The agency edge"),
// without HTTP: what a privacy officer of a compliance office the edge
// serves does from the console — find a person by an agency's record
// number, read the consent trail and the accounting of disclosures, see
// who opened a record, review emergency access, watch the log's integrity
// and export or check a bundle — and every agency's referral figures. Each
// read is made as the agency naming the officer (the hub records it); each
// review is an envelope the officer signs. The edge adds no power: the hub
// decides, and the edge asks for the compliance role before it asks.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "careloop/v1/audit.pb.h"
#include "careloop/v1/consent.pb.h"
#include "services/audit/bundle.h"
#include "services/edge/hub_client.h"
#include "services/edge/signer.h"
#include "services/edge/staff_accounts.h"

namespace careloop::edge {

// The edge's watch on the hub's log: the last head it accepted, checked
// against every new one (another log id, a rollback, a fork or rewritten
// history turn it red, and it stays red, with the evidence, until an
// operator clears the state file).
struct Integrity {
  bool known = false;  // a verifier key is configured and a head was read
  bool ok = false;
  std::string problem;  // when red: for people
  std::string log_id;
  uint64_t tree_size = 0;
  int64_t signed_unix_nanos = 0;  // the latest head's timestamp
  int64_t checked_unix_nanos = 0;
};

// The monitor itself, over any way of reading heads and proofs: the
// latest signed head, and the consistency proof between two sizes.
class LogMonitor {
 public:
  using HeadFn = std::function<absl::StatusOr<v1::SignedHead>()>;
  using ProofFn =
      std::function<absl::StatusOr<v1::ConsistencyProof>(uint64_t size1, uint64_t size2)>;
  // `verifier_key`: hub-log.vkey's text ("" : not monitored). `state_path`:
  // the last accepted head; `state_path` + ".alert": the first alarm.
  LogMonitor(std::string verifier_key, std::string state_path)
      : verifier_key_(std::move(verifier_key)), state_path_(std::move(state_path)) {}
  absl::StatusOr<Integrity> Check(const HeadFn& head, const ProofFn& proof, int64_t now_unix_nanos)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> Verifier() const;

 private:
  std::string verifier_key_;
  std::string state_path_;
  absl::Mutex mu_;  // one check at a time
};

class PrivacyDesk {
 public:
  // `verifier_key`: the hub's log verifier key (hub-log.vkey's text; "" when
  // the edge has none, and the monitor says so). `state_path`: where the
  // monitor keeps the last head it accepted.
  PrivacyDesk(HubClient* hub, Signer* signer, Clock* clock, std::string verifier_key,
              std::string state_path);

  // The hub's id of the person an agency knows by this record number (in
  // authority "<agency>/mrn"): a lookup, never a new person.
  absl::StatusOr<std::string> FindPerson(const StaffMember& who, const std::string& agency,
                                         const std::string& mrn);
  absl::StatusOr<v1::DisclosureReportResponse> Report(const StaffMember& who,
                                                      const std::string& subject,
                                                      int64_t from_unix_nanos,
                                                      int64_t to_unix_nanos, bool hipaa);
  absl::StatusOr<v1::TrailResponse> Trail(const StaffMember& who, const std::string& subject);
  // Who opened what; any staff member may ask about their own agency (the
  // hub answers an agency only about its own staff), compliance about all.
  absl::StatusOr<v1::AccessResponse> Access(const StaffMember& who, const v1::AccessRequest& req);
  absl::StatusOr<v1::ListBreakGlassResponse> BreakGlass(const StaffMember& who,
                                                        bool include_reviewed);
  absl::Status Review(const StaffMember& who, const std::string& break_glass_id, bool appropriate,
                      const std::string& notes);
  absl::StatusOr<v1::ExportResponse> Export(const StaffMember& who, const v1::ExportRequest& req);
  // Checks an uploaded bundle with the hub's verifier key, offline.
  absl::StatusOr<audit::BundleReport> VerifyBundle(const StaffMember& who,
                                                   const std::string& jsonl) const;
  // The referral figures of `who`'s agency.
  absl::StatusOr<v1::FiguresResponse> Figures(const StaffMember& who,
                                              const v1::FiguresRequest& req);
  // Reads the latest head and checks it against the last one accepted.
  absl::StatusOr<Integrity> CheckIntegrity(const StaffMember& who);

 private:
  HubClient* hub_;
  Signer* signer_;
  Clock* clock_;
  LogMonitor monitor_;
};

}  // namespace careloop::edge
