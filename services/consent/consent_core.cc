// The consent core: its policy, the folds of a subject's records, and
// Submit's dispatch of each signed change to its plan.
#include "services/consent/consent_core.h"

#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/sha256.h"
#include "base/status.h"
#include "base/strings.h"
#include "services/consent/internal.h"
#include "services/names/names.h"
#include "services/policy/policy.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::consent {

trust::RpcPolicy ConsentPolicy(absl::Duration max_clock_skew) {
  return policy::ConsentTable().Envelopes("Submit", max_clock_skew);
}

ConsentCore::ConsentCore(storage::Ledger* ledger, directory::Agencies* directory,
                         storage::ProjectionRunner* directory_runner, Clock* clock,
                         ConsentOptions options)
    : ledger_(ledger),
      directory_(directory),
      directory_runner_(directory_runner),
      clock_(clock),
      options_(std::move(options)),
      policy_(policy::ConsentTable().Envelopes("Submit", options_.max_clock_skew, directory)),
      gate_(&policy::ConsentTable(), directory, /*tls=*/false),
      seen_(ledger) {
  if (!options_.new_subject_id) options_.new_subject_id = DefaultSubjectId;
}

absl::Status ConsentCore::RecordRead(const policy::Caller& who, absl::string_view rpc,
                                     const google::protobuf::Message& request,
                                     absl::string_view subject, absl::string_view record_type) {
  const std::string caller = who.CoreId();
  if (caller.empty() || caller == directory::kHubAgency) return absl::OkStatus();  // internal
  if (subject.empty())
    return ledger_->Append(trust::ReadRecord(caller, who.actor, rpc, request)).status();
  v1::RecordAccessed read;
  read.set_agency(caller);
  read.set_actor(who.actor);
  read.set_rpc(std::string(rpc));
  read.set_record_type(std::string(record_type));
  read.set_subject_id(std::string(subject));
  return ledger_->Append(trust::AccessRecord(read)).status();
}

bool ConsentCore::IsCompliance(absl::string_view agency) const {
  if (agency == directory::kHubAgency) return true;
  std::optional<v1::AgencyRecord> r = directory_->Get(agency);
  return r.has_value() && r->active() && Contains(r->profile().roles(), kComplianceRole);
}

absl::StatusOr<std::string> ConsentCore::Admit(const policy::Caller& caller,
                                               absl::string_view method) const {
  RETURN_IF_ERROR(gate_.Admit(caller, method));
  return caller.CoreId();
}

bool ConsentCore::MayRead(const v1::ConsentRecord& r, absl::string_view caller) const {
  if (caller.empty()) return false;
  if (r.consent().recording_agency() == caller || Contains(r.holders(), caller)) return true;
  return IsCompliance(caller);
}

absl::StatusOr<bool> ConsentCore::StillCurrent(const StreamReads& reads) {
  for (const auto& [stream, version] : reads) {
    ASSIGN_OR_RETURN(uint64_t now, ledger_->StreamVersion(stream));
    if (now != version) return false;
  }
  return true;
}

absl::StatusOr<ConsentCore::SubjectState> ConsentCore::Load(absl::string_view subject_id,
                                                            bool with_disclosures) {
  if (!with_disclosures) {
    CachedFold hit;
    {
      absl::MutexLock lock(&folds_mu_);
      if (auto it = folds_.find(subject_id); it != folds_.end()) hit = it->second;
    }
    if (hit.state != nullptr) {
      ASSIGN_OR_RETURN(bool current, StillCurrent(hit.reads));
      if (current) return *hit.state;
    }
  }
  SubjectState st;
  StreamReads reads;
  ASSIGN_OR_RETURN(st.subjects, Subjects(subject_id, &reads));
  ASSIGN_OR_RETURN(std::vector<v1::Event> all, ReadConsentStreams(&st, &reads));
  for (const v1::Event& e : all) RETURN_IF_ERROR(FoldConsentEvent(e, &st));
  if (!with_disclosures) {
    absl::MutexLock lock(&folds_mu_);
    if (folds_.size() >= kMaxCachedFolds) folds_.clear();  // bounded
    folds_[subject_id] = CachedFold{std::make_shared<const SubjectState>(st), std::move(reads)};
    return st;
  }
  RETURN_IF_ERROR(LoadDisclosures(&st));
  return st;
}

absl::StatusOr<std::vector<v1::Event>> ConsentCore::ReadConsentStreams(SubjectState* st,
                                                                       StreamReads* reads) {
  std::vector<v1::Event> all;
  for (const std::string& m : st->subjects.members) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, ConsentStream(m)));
    v1::StreamVersion v;
    v.set_stream(ConsentStream(m));
    v.set_version(VersionOf(events));
    st->consent_versions.push_back(v);
    reads->emplace_back(ConsentStream(m), v.version());
    for (v1::Event& e : events) all.push_back(std::move(e));
  }
  if (st->subjects.members.size() > 1) {
    std::sort(all.begin(), all.end(), [](const v1::Event& a, const v1::Event& b) {
      return a.header().seq() < b.header().seq();
    });
  }
  return all;
}

absl::Status ConsentCore::FoldConsentEvent(const v1::Event& e, SubjectState* st) {
  const std::string& type = e.header().type();
  const uint64_t seq = e.header().seq();
  if (type == names::event::kGrantConsent) {
    v1::Envelope env;
    ASSIGN_OR_RETURN(v1::GrantConsent g, SignedPayload<v1::GrantConsent>(e, &env));
    ConsentView view;
    v1::Consent* c = view.record.mutable_consent();
    *c = g.consent();
    c->set_consent_id(ConsentIdFor(env.sender_agency(), env.message_id()));
    c->set_subject_id(st->subjects.survivor);
    c->set_recording_agency(env.sender_agency());
    c->set_recording_actor(env.actor().user_id());
    c->set_status(v1::CONSENT_ACTIVE);
    view.record.set_granted_seq(seq);
    view.record.set_last_change_seq(seq);
    view.stream = e.header().stream();
    st->consents[c->consent_id()] = std::move(view);
  } else if (type == names::event::kAmendConsent) {
    ASSIGN_OR_RETURN(v1::AmendConsent amend, SignedPayload<v1::AmendConsent>(e));
    auto it = st->consents.find(amend.consent_id());
    if (it == st->consents.end()) return Corrupt(e, "changes an unknown consent");
    v1::Consent* c = it->second.record.mutable_consent();
    const v1::Consent& n = amend.consent();
    *c->mutable_grantor() = n.grantor();
    *c->mutable_provision() = n.provision();
    *c->mutable_period() = n.period();
    *c->mutable_evidence() = n.evidence();
    *c->mutable_part2() = n.part2();
    c->set_hipaa_authorization(n.hipaa_authorization());
    it->second.record.set_last_change_seq(seq);
  } else if (type == names::event::kRevokeConsent) {
    v1::Envelope env;
    ASSIGN_OR_RETURN(v1::RevokeConsent revoke, SignedPayload<v1::RevokeConsent>(e, &env));
    auto it = st->consents.find(revoke.consent_id());
    if (it == st->consents.end()) return Corrupt(e, "changes an unknown consent");
    v1::Consent* c = it->second.record.mutable_consent();
    c->set_status(revoke.entered_in_error() ? v1::CONSENT_ENTERED_IN_ERROR : v1::CONSENT_REVOKED);
    c->set_revoked_unix_nanos(e.header().commit_time_unix_nanos());
    c->set_revocation_reason(revoke.reason());
    it->second.record.set_revoked_by_agency(env.sender_agency());
    it->second.record.set_revoked_by_user(env.actor().user_id());
    it->second.record.set_last_change_seq(seq);
  } else if (type == names::event::kBreakGlassInvoked) {
    ASSIGN_OR_RETURN(v1::BreakGlassRecord r, HubPayload<v1::BreakGlassRecord>(e));
    st->break_glass.push_back(std::move(r));
  } else if (type != names::event::kConsentRevocationNotice) {
    return Corrupt(e, "has a type the consent service does not know");
  }
  return absl::OkStatus();
}

absl::Status ConsentCore::LoadDisclosures(SubjectState* st) {
  for (const std::string& m : st->subjects.members) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, DisclosureStream(m)));
    v1::StreamVersion v;
    v.set_stream(DisclosureStream(m));
    v.set_version(VersionOf(events));
    st->disclosure_versions.push_back(v);
    for (const v1::Event& e : events) {
      ASSIGN_OR_RETURN(v1::DisclosureRecorded d, HubPayload<v1::DisclosureRecorded>(e));
      for (const std::string& cid : d.consent_ids()) {
        auto it = st->consents.find(cid);
        if (it != st->consents.end() &&
            !Contains(it->second.record.holders(), d.recipient_agency()))
          it->second.record.add_holders(d.recipient_agency());
      }
      d.set_disclosed_unix_nanos(e.header().commit_time_unix_nanos());
      d.set_subject_id(m);
      st->disclosures.emplace_back(e.header().seq(), std::move(d));
    }
  }
  std::sort(st->disclosures.begin(), st->disclosures.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return absl::OkStatus();
}

absl::StatusOr<std::string> ConsentCore::LocateConsent(absl::string_view consent_id) {
  RETURN_IF_ERROR(storage::ValidateToken(consent_id, "consent id"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadWholeStream(ledger_, names::stream::ConsentId(consent_id)));
  if (events.empty()) return absl::NotFoundError(absl::StrCat("no consent ", consent_id));
  ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(events.front()));
  return ref.subject_id();
}

absl::StatusOr<v1::SubmitEnvelopeResponse> ConsentCore::Submit(absl::string_view bytes) {
  std::string assigned;
  ASSIGN_OR_RETURN(trust::Accepted a,
                   trust::AcceptSigned(bytes, policy_, *directory_, seen_, ledger_, clock_->Now(),
                                       [&](const trust::VerifiedEnvelope& v, absl::string_view b,
                                           absl::Time) { return Plan(v, b, &assigned); }));
  const v1::Envelope& e = a.envelope;
  if (e.payload_type() == names::payload::kGrantConsent)
    assigned = ConsentIdFor(e.sender_agency(), e.message_id());
  if (e.payload_type() == names::payload::kBreakGlass)
    assigned = BreakGlassIdFor(e.sender_agency(), e.message_id());
  v1::SubmitEnvelopeResponse resp;
  ASSIGN_OR_RETURN(*resp.mutable_receipt(), ledger_->GetReceipt(a.change_seq));
  resp.set_assigned_id(assigned);
  return resp;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::Plan(const trust::VerifiedEnvelope& v,
                                                    absl::string_view bytes,
                                                    std::string* assigned_id) {
  const std::string& type = v.envelope.payload_type();
  const std::string& sender = v.envelope.sender_agency();
  if (sender == directory::kHubAgency) {
    return absl::PermissionDeniedError(
        absl::StrCat("the hub admin does not send ", type, "; agencies and compliance do"));
  }
  absl::StatusOr<v1::AppendRequest> req;
  if (type == names::payload::kLinkIdentifier) {
    req = PlanLink(v, bytes);
  } else if (type == names::payload::kMergeSubjects) {
    req = PlanMerge(v, bytes);
  } else if (type == names::payload::kUnmergeSubjects) {
    req = PlanUnmerge(v, bytes);
  } else if (type == names::payload::kGrantConsent) {
    req = PlanGrant(v, bytes, assigned_id);
  } else if (type == names::payload::kAmendConsent || type == names::payload::kRevokeConsent) {
    req = PlanAmendOrRevoke(v, bytes);
  } else if (type == names::payload::kBreakGlass) {
    req = PlanBreakGlass(v, bytes, assigned_id);
  } else if (type == names::payload::kReviewBreakGlass) {
    req = PlanReview(v, bytes);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("ConsentService does not take ", type));
  }
  if (!req.ok()) return req;
  // The change concerns its sender.
  for (v1::EventInput& e : *req->mutable_events()) {
    if (e.payload() == bytes && !Contains(e.agencies(), sender) && sender != directory::kHubAgency)
      e.add_agencies(sender);
  }
  return req;
}

}  // namespace careloop::consent
