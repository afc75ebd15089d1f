// What other services may know of referrals: how delivery renders a referral
// for its recipient, and the event that records a delivery. The notification
// service depends on this, not on the referral core.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "careloop/v1/ledger.pb.h"
#include "careloop/v1/referral.pb.h"

namespace careloop::referral {

class Renderer {
 public:
  virtual ~Renderer() = default;
  // The referral ("<sender>/<id>") as `caller` sees it now (consent checked
  // again), without recording that the recipient viewed it: for delivery.
  virtual absl::StatusOr<v1::ReferralView> View(absl::string_view referral,
                                                absl::string_view caller) = 0;
};

// The event that records a delivery to the recipient (`referral` is
// "<sender>/<id>"); it concerns the sender, who is told.
v1::EventInput DeliveredEvent(absl::string_view referral, const v1::ReferralDelivered& delivered,
                              absl::string_view subject_id);

}  // namespace careloop::referral
