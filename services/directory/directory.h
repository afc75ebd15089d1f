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
#include "base/clock.h"
#include "careloop/v1/directory.pb.h"
#include "services/directory/agencies.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/trust/envelope.h"
#include "services/trust/signed_change.h"
#include "storage/ledger.h"
#include "storage/projection.h"

namespace careloop::directory {

// The directory's state: agencies by id. Thread-safe.
class DirectoryState final : public storage::Projection, public Agencies {
 public:
  explicit DirectoryState(HubAdmin admin) : admin_(std::move(admin)) {}

  // Projection: rebuilt from the ledger at every start (it is small).
  absl::StatusOr<uint64_t> AppliedSeq() override;
  absl::Status Apply(const std::vector<v1::Event>& events) override;

  // EnvelopeDirectory: agencies, actors and keys as the verifier sees them.
  absl::StatusOr<std::optional<trust::AgencyView>> FindAgency(absl::string_view agency_id) override;

  std::optional<v1::AgencyRecord> Get(absl::string_view agency_id) const override;
  std::vector<v1::AgencyRecord> All() const override;
  // Only the directory's own streams' payloads (agency/, capacity/).
  PayloadFilter PayloadsWanted() const override;
  const HubAdmin& admin() const override { return admin_; }
  AuthorityUse Authority(absl::string_view agency_id, absl::string_view authority) const override;
  // The authority's record (SetIdentifierAuthority) and its stream version.
  std::optional<std::pair<v1::SetIdentifierAuthority, uint64_t>> AuthorityRecord(
      absl::string_view authority) const;

 private:
  absl::Status ApplyAuthority(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyOne(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A capacity slot taken or released by a referral (hub-written).
  absl::Status ApplySlot(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  HubAdmin admin_;
  mutable absl::Mutex mu_;
  std::map<std::string, v1::AgencyRecord> agencies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<v1::SetIdentifierAuthority, uint64_t>, std::less<>> authorities_
      ABSL_GUARDED_BY(mu_);
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
};

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
  // The reads DirectoryService serves; each admits `caller` through the
  // directory table (policy::Gate) first, whoever calls it.
  // The receipt of an accepted envelope of the caller's own, at any time.
  absl::StatusOr<v1::Receipt> GetReceipt(const v1::GetEnvelopeReceiptRequest& req,
                                         const policy::Caller& caller);
  // An agency as the caller may see it: a confidential address and the
  // capacity's holders are shown only to the agency itself and the hub.
  absl::StatusOr<v1::AgencyRecord> GetAgency(const v1::GetAgencyRequest& req,
                                             const policy::Caller& caller);
  // Agencies matching every criterion given, as the caller may see them, by id.
  absl::StatusOr<std::vector<v1::AgencyRecord>> Search(const v1::SearchAgenciesRequest& req,
                                                       const policy::Caller& caller);

 private:
  absl::StatusOr<std::string> Admit(const policy::Caller& caller, absl::string_view method) const;
  void MaskFor(v1::AgencyRecord* r, absl::string_view viewer) const;
  absl::StatusOr<v1::AppendRequest> Plan(const trust::VerifiedEnvelope& v, absl::string_view bytes,
                                         absl::Time received) const;
  absl::StatusOr<v1::AppendRequest> PlanAuthority(const trust::VerifiedEnvelope& v,
                                                  absl::string_view bytes) const;

  storage::Ledger* ledger_;
  DirectoryState* state_;
  storage::ProjectionRunner* runner_;
  Clock* clock_;
  trust::RpcPolicy policy_;
  policy::Gate gate_;
  trust::LedgerMessageLog seen_;
  std::set<std::string> service_codes_;
};

}  // namespace careloop::directory
