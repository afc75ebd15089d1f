// How every service takes a signed change: parse, verify in the fixed order,
// answer a duplicate with the original, plan the change's append, add the
// (sender, message id) marker, append, and sort out a lost race. The
// directory, consent, referral and notification services all take their
// envelopes through here, so the order of checks is written once.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "careloop/v1/envelope.pb.h"
#include "careloop/v1/ledger.pb.h"
#include "services/trust/envelope.h"
#include "storage/ledger.h"

namespace careloop::trust {

// The envelopes the hub accepted, by (sender, message id): a marker event in
// stream msg/<sender>/<message id>, appended with the change itself. Kept for
// good (unlike the ledger's idempotency window), so a receipt can be fetched
// at any time.
class LedgerMessageLog final : public MessageLog {
 public:
  explicit LedgerMessageLog(storage::Ledger* ledger) : ledger_(ledger) {}
  absl::StatusOr<std::optional<SeenMessage>> Find(absl::string_view sender,
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
    const VerifiedEnvelope& v, absl::string_view bytes, absl::Time received)>;

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
absl::StatusOr<PlannedChange> PlanSigned(absl::string_view bytes, const RpcPolicy& policy,
                                         EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                         absl::Time received, const PlanFn& plan);
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
absl::StatusOr<Accepted> AcceptSigned(absl::string_view bytes, const RpcPolicy& policy,
                                      EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                      storage::Ledger* ledger, absl::Time received,
                                      const PlanFn& plan);

}  // namespace careloop::trust
