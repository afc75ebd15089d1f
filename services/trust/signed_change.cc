#include "services/trust/signed_change.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "services/names/names.h"
#include "storage/validate.h"

namespace careloop::trust {

std::string LedgerMessageLog::StreamFor(absl::string_view sender, absl::string_view message_id) {
  return names::stream::Message(sender, message_id);
}

absl::StatusOr<std::optional<SeenMessage>> LedgerMessageLog::Find(absl::string_view sender,
                                                                  absl::string_view message_id) {
  v1::ReadStreamRequest req;
  req.set_stream(StreamFor(sender, message_id));
  req.set_limit(1);
  absl::StatusOr<v1::ReadResponse> marker = ledger_->ReadStream(req);
  if (absl::IsInvalidArgument(marker.status())) return std::optional<SeenMessage>();
  RETURN_IF_ERROR(marker.status());
  if (marker->events().empty()) return std::optional<SeenMessage>();
  // The change is the event just before its marker (one append).
  const uint64_t seq = marker->events(0).header().seq() - 1;
  v1::ReadRequest read;
  read.set_from_seq(seq);
  read.set_limit(1);
  read.set_include_payloads(true);
  ASSIGN_OR_RETURN(v1::ReadResponse change, ledger_->Read(read));
  if (change.events().empty() || change.events(0).header().seq() != seq) {
    return absl::DataLossError(
        absl::StrCat("the change before message marker seq ", seq + 1, " is missing"));
  }
  return std::optional<SeenMessage>(SeenMessage{change.events(0).payload(), seq});
}

absl::StatusOr<PlannedChange> PlanSigned(absl::string_view bytes, const RpcPolicy& policy,
                                         EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                         absl::Time received, const PlanFn& plan) {
  // The message id names a ledger stream, so it is held to the stream charset.
  ASSIGN_OR_RETURN(v1::Envelope parsed, ParseEnvelope(bytes, policy.limits));
  RETURN_IF_ERROR(storage::ValidateStreamSegment(parsed.message_id(), "envelope: message_id"));
  if (parsed.sender_agency() != names::kHubAgency)
    RETURN_IF_ERROR(storage::ValidateAgencyId(parsed.sender_agency()));
  ASSIGN_OR_RETURN(VerifiedEnvelope v, VerifyParsedEnvelope(std::move(parsed), bytes, policy,
                                                            directory, seen, received));
  PlannedChange out;
  out.accepted.envelope = v.envelope;
  if (v.duplicate) {
    out.accepted.change_seq = v.original_seq;
    return out;
  }
  // Who may send this payload type at all (the policy table's parties).
  if (policy.admit) RETURN_IF_ERROR(policy.admit(v.envelope));
  ASSIGN_OR_RETURN(v1::AppendRequest req, plan(v, bytes, received));
  // The marker goes right after the event that holds the envelope: that is
  // how LedgerMessageLog finds the envelope again.
  int change = -1;
  for (int i = 0; i < req.events_size(); ++i) {
    if (req.events(i).payload() == bytes) change = i;
  }
  CARELOOP_CHECK(change >= 0);  // every plan stores the envelope
  const v1::Envelope& e = v.envelope;
  v1::EventInput marker;
  marker.set_stream(LedgerMessageLog::StreamFor(e.sender_agency(), e.message_id()));
  marker.set_type(names::event::kEnvelopeAccepted);
  if (e.sender_agency() != names::kHubAgency) marker.add_agencies(e.sender_agency());
  req.mutable_events()->Add(std::move(marker));
  for (int i = req.events_size() - 1; i > change + 1; --i)
    req.mutable_events()->SwapElements(i, i - 1);
  v1::Precondition* once = req.add_preconditions();
  once->set_stream(LedgerMessageLog::StreamFor(e.sender_agency(), e.message_id()));
  once->set_must_not_exist(true);
  out.append = std::move(req);
  out.change = change;
  return out;
}

absl::StatusOr<Accepted> SettleSigned(const PlannedChange& planned, absl::string_view bytes,
                                      const absl::StatusOr<v1::Commit>& commit,
                                      LedgerMessageLog& seen) {
  const v1::Envelope& e = planned.accepted.envelope;
  if (absl::IsFailedPrecondition(commit.status())) {
    // Lost a race: the same message landed meanwhile (answer as a retry), or
    // what the plan read changed (the caller retries with the same message id).
    ASSIGN_OR_RETURN(std::optional<SeenMessage> prior,
                     seen.Find(e.sender_agency(), e.message_id()));
    Accepted out;
    out.envelope = e;
    if (prior.has_value() && prior->envelope_bytes == bytes) {
      out.change_seq = prior->seq;
      return out;
    }
    if (prior.has_value()) {
      return absl::AlreadyExistsError("the message id was used for a different envelope meanwhile");
    }
    return absl::AbortedError(
        absl::StrCat("what the change depends on changed concurrently; retry "
                     "the same envelope (",
                     commit.status().message(), ")"));
  }
  RETURN_IF_ERROR(commit.status());
  Accepted out;
  out.envelope = e;
  out.change_seq = commit->first_seq() + static_cast<uint64_t>(planned.change);
  out.last_seq = commit->last_seq();
  return out;
}

absl::StatusOr<Accepted> AcceptSigned(absl::string_view bytes, const RpcPolicy& policy,
                                      EnvelopeDirectory& directory, LedgerMessageLog& seen,
                                      storage::Ledger* ledger, absl::Time received,
                                      const PlanFn& plan) {
  ASSIGN_OR_RETURN(PlannedChange planned,
                   PlanSigned(bytes, policy, directory, seen, received, plan));
  if (!planned.append.has_value()) return std::move(planned.accepted);
  const absl::StatusOr<v1::Commit> commit = ledger->Append(*std::move(planned.append));
  return SettleSigned(planned, bytes, commit, seen);
}

}  // namespace careloop::trust
