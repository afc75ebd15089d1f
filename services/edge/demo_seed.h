// careloop demo seed (dev mode only): a small network a newcomer can try in
// the browser. A hospital (org.stmarys) with a discharge planner, a food
// bank (with an admin, who signs in with a second factor and manages its
// staff) and a shelter with intake workers, and a privacy office with an
// officer; each agency's key made in the edge's custody and registered by
// the hub admin with its staff as directory actors; a staff account per
// person; and one patient (MRN 000123 at St Mary's) who consented to share
// contact details and social needs across the network for care
// coordination, so a referral shows what consent lets through and what it
// withholds. Running it again changes nothing and prints the same logins.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "services/edge/change_feed.h"
#include "services/edge/desk.h"
#include "services/edge/hub_client.h"
#include "services/edge/key_custody.h"
#include "services/edge/staff_accounts.h"
#include "services/trust/ed25519.h"

namespace careloop::edge {

struct DemoSeedParts {
  HubClient* hub = nullptr;
  KeyCustody* keys = nullptr;
  StaffAccounts* accounts = nullptr;
  Desk* desk = nullptr;
  ChangeFeed* feed = nullptr;  // may be null
  const trust::Ed25519PrivateKey* hub_admin_key = nullptr;
  Clock* clock = nullptr;
  // Where the logins are kept (0600), so a second run prints them again.
  std::string logins_file;
};

// Seeds the network; returns the logins as JSON:
// {"logins":[{"agency","user","password","name","role"[,"totp_secret"]}...],
// "mrn":"000123"} (an admin's login carries its second factor's secret).
absl::StatusOr<std::string> SeedDemo(const DemoSeedParts& parts);

}  // namespace careloop::edge
