// The agency directory (core, no gRPC): which agencies, actors and keys exist
// and existed when. Its state is a projection of the ledger's agency/<id>
// streams; every change arrives as a signed envelope, is verified, checked
// against the current state and appended with preconditions, so two racing
// changes of one agency cannot both land.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "careloop/v1/directory.pb.h"
#include "services/common/clock.h"
#include "services/trust/envelope.h"
#include "storage/ledger.h"
#include "storage/projection.h"

namespace careloop::directory {

// The hub itself signs onboarding: sender "hub", role "hub-admin", with the
// admin key from the hub's configuration (not from the ledger).
inline constexpr char kHubAgency[] = "hub";
inline constexpr char kHubAdminRole[] = "hub-admin";
// An agency's own administrator.
inline constexpr char kAgencyAdminRole[] = "admin";

struct HubAdmin {
  std::string key_id = "hub-admin-1";
  std::string public_key;                       // raw Ed25519
  std::set<std::string> users = {"hub-admin"};  // user ids allowed to act as hub admin
};

// The directory's state: agencies by id. Thread-safe.
class DirectoryState final : public storage::Projection, public trust::EnvelopeDirectory {
 public:
  explicit DirectoryState(HubAdmin admin) : admin_(std::move(admin)) {}

  // Projection: rebuilt from the ledger at every start (it is small).
  absl::StatusOr<uint64_t> AppliedSeq() override;
  absl::Status Apply(const std::vector<v1::Event>& events) override;

  // EnvelopeDirectory: agencies, actors and keys as the verifier sees them.
  absl::StatusOr<std::optional<trust::AgencyView>> FindAgency(absl::string_view agency_id) override;

  std::optional<v1::AgencyRecord> Get(absl::string_view agency_id) const;
  std::vector<v1::AgencyRecord> All() const;
  // Only the directory's own streams' payloads (agency/, capacity/).
  PayloadFilter PayloadsWanted() const override;
  const HubAdmin& admin() const { return admin_; }

 private:
  absl::Status ApplyOne(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  HubAdmin admin_;
  mutable absl::Mutex mu_;
  std::map<std::string, v1::AgencyRecord> agencies_ ABSL_GUARDED_BY(mu_);
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
};

// The envelopes the hub accepted, by (sender, message id): a marker event in
// stream msg/<sender>/<message id>, appended with the change itself. Kept for
// good (unlike the ledger's idempotency window), so a receipt can be fetched
// at any time.
class LedgerMessageLog final : public trust::MessageLog {
 public:
  explicit LedgerMessageLog(storage::Ledger* ledger) : ledger_(ledger) {}
  absl::StatusOr<std::optional<trust::SeenMessage>> Find(absl::string_view sender,
                                                         absl::string_view message_id) override;
  static std::string StreamFor(absl::string_view sender, absl::string_view message_id);

 private:
  storage::Ledger* ledger_;
};

// One signed change accepted: the envelope, the seq of the event that holds
// it, and the last seq of its append (0 when it was a duplicate).
struct Accepted {
  v1::Envelope envelope;
  uint64_t change_seq = 0;
  uint64_t last_seq = 0;
};
// Plans the append for a verified, new envelope: the events and
// preconditions of the change. One event's payload must be `bytes` (the
// envelope exactly as received).
using PlanFn = std::function<absl::StatusOr<v1::AppendRequest>(
    const trust::VerifiedEnvelope& v, absl::string_view bytes, absl::Time received)>;

// A signed change verified and planned, not yet appended. `append` is the
// plan with the (sender, message id) marker, `change` the index in it of the
// event holding the envelope; no append when the envelope is a duplicate,
// and `accepted` is then the answer.
struct PlannedChange {
  Accepted accepted;
  std::optional<v1::AppendRequest> append;
  int change = -1;
};
// AcceptSigned's first half: parse, verify, answer a duplicate, plan, mark.
absl::StatusOr<PlannedChange> PlanSigned(absl::string_view bytes, const trust::RpcPolicy& policy,
                                         trust::EnvelopeDirectory& directory,
                                         LedgerMessageLog& seen, absl::Time received,
                                         const PlanFn& plan);
// AcceptSigned's second half: the answer once the planned append is done,
// a lost race sorted out (reads the ledger when the append failed its
// preconditions).
absl::StatusOr<Accepted> SettleSigned(const PlannedChange& planned, absl::string_view bytes,
                                      const absl::StatusOr<v1::Commit>& commit,
                                      LedgerMessageLog& seen);

// How every service takes a signed change: parse, verify in the fixed order,
// answer a duplicate with the original, plan, append the plan together with
// the (sender, message id) marker, and sort out a lost race (the same message
// landed meanwhile: a retry; anything else: ABORTED, retry the same envelope).
absl::StatusOr<Accepted> AcceptSigned(absl::string_view bytes, const trust::RpcPolicy& policy,
                                      trust::EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                      storage::Ledger* ledger, absl::Time received,
                                      const PlanFn& plan);

// Open slots now: the last report minus the referrals accepted since.
int64_t OpenSlots(const v1::CapacityEntry& c);

// The service codes agencies may offer: the HL7 SDOH Clinical Care IG
// categories and careloop's own, plus any the configuration adds.
const std::set<std::string>& DefaultServiceCodes();

// The payload types the directory accepts and who may send each.
trust::RpcPolicy DirectoryPolicy(absl::Duration max_clock_skew);

class DirectoryCore {
 public:
  DirectoryCore(storage::Ledger* ledger, DirectoryState* state, storage::ProjectionRunner* runner,
                Clock* clock, absl::Duration max_clock_skew = absl::Minutes(5),
                std::set<std::string> service_codes = DefaultServiceCodes());

  // Verifies and applies one signed change; answers with its receipt. A retry
  // of the same envelope gets the original receipt; a rejected one writes
  // nothing.
  absl::StatusOr<v1::Receipt> Submit(absl::string_view envelope_bytes);
  // The receipt of an accepted envelope, at any time.
  absl::StatusOr<v1::Receipt> GetReceipt(absl::string_view sender, absl::string_view message_id);
  // An agency as `viewer` may see it: a confidential address is shown only to
  // the agency itself and the hub.
  absl::StatusOr<v1::AgencyRecord> GetAgency(absl::string_view agency_id, absl::string_view viewer,
                                             uint64_t min_seq = 0);
  // Agencies matching every criterion given, as `viewer` may see them, by id.
  absl::StatusOr<std::vector<v1::AgencyRecord>> Search(const v1::SearchAgenciesRequest& req,
                                                       absl::string_view viewer);

 private:
  void MaskFor(v1::AgencyRecord* r, absl::string_view viewer) const;
  absl::StatusOr<v1::AppendRequest> Plan(const trust::VerifiedEnvelope& v, absl::string_view bytes,
                                         absl::Time received) const;

  storage::Ledger* ledger_;
  DirectoryState* state_;
  storage::ProjectionRunner* runner_;
  Clock* clock_;
  trust::RpcPolicy policy_;
  LedgerMessageLog seen_;
  std::set<std::string> service_codes_;
};

}  // namespace careloop::directory
