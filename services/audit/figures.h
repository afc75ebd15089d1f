// The network's numbers (AuditService.Figures): a projection of the
// referral streams, kept in memory and brought up to the log's end before
// each answer, aggregated over a period by receiving agency or by service.
//
// What is counted (docs/API.md, "Referral figures"):
// - an offer is one routing of a referral to an agency; viewed, accepted,
//   declined (with its reason code) and escalated (a deadline warning, or
//   superseded without an answer) are the offer's;
// - completed, closed (a terminal status: completed, cancelled, failed,
//   entered in error, or declined and not routed on), unassigned and the
//   time to close are the referral's, in the row of the agency that held it
//   last (an unassigned referral: the row "-");
// - times are from the routing (first view, accept) or the submission
//   (close), as p50 and p90 by nearest rank, in whole seconds;
// - the period selects referrals by when they were submitted.
//
// Small cells are suppressed as public-health reporting does: a count from
// 1 to 10 is given as suppressed, as are a rate whose numerator or
// denominator is, a time measured fewer than 11 times, and (complementary
// suppression) the next smallest decline reason when only one reason in a
// row would be suppressed. An agency's figures cover the referrals it sent
// (every offer) and the offers it received; the network's cover all.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "careloop/v1/audit.pb.h"
#include "storage/ledger.h"

namespace careloop::audit {

// Counts from 1 to this are never shown.
inline constexpr uint64_t kSmallCell = 10;

class ReferralFigures {
 public:
  explicit ReferralFigures(storage::Ledger* ledger) : ledger_(ledger) {}

  // `agency`: the asking agency's scope; "" for the network.
  absl::StatusOr<v1::FiguresResponse> Compute(const v1::FiguresRequest& req,
                                              const std::string& agency, int64_t now_unix_nanos);

  struct Offer {
    std::string agency;
    uint32_t attempt = 0;
    int64_t routed_at = 0, viewed_at = 0, accepted_at = 0, declined_at = 0;
    std::string decline_code;
    bool warned = false;
  };
  struct Referral {
    std::string sender, service;
    int64_t submitted_at = 0, closed_at = 0;
    bool completed = false, unassigned = false;
    bool closed_by_decline = false;  // until routed on or unassigned
    std::vector<Offer> offers;
  };

 private:
  absl::Status CatchUp() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Apply(const v1::Event& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Ledger* ledger_;
  absl::Mutex mu_;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Referral> referrals_ ABSL_GUARDED_BY(mu_);  // by stream
};

// The figures of these referrals (exposed for the projection's tests).
v1::FiguresResponse Aggregate(const std::vector<const ReferralFigures::Referral*>& referrals,
                              const std::string& agency, const std::string& group_by);

}  // namespace careloop::audit
