#include "services/referral/renderer.h"

#include <string>

#include "services/names/names.h"

namespace careloop::referral {

v1::EventInput DeliveredEvent(absl::string_view referral, const v1::ReferralDelivered& delivered,
                              absl::string_view subject_id) {
  const size_t slash = referral.find('/');
  v1::EventInput ev;
  ev.set_stream(names::stream::Referral(referral));
  ev.set_type(names::event::kReferralDelivered);
  ev.set_subject(std::string(subject_id));
  ev.set_payload(delivered.SerializeAsString());
  ev.add_agencies(std::string(referral.substr(0, slash)));  // the sender is told
  return ev;
}

}  // namespace careloop::referral
