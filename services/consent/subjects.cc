// Subjects: resolving identifiers, linking them, merging subjects, and
// following merges.
#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/sha256.h"
#include "base/status.h"
#include "base/strings.h"
#include "careloop/v1/referral.pb.h"
#include "services/consent/consent_core.h"
#include "services/consent/internal.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "storage/validate.h"

namespace careloop::consent {

absl::StatusOr<SubjectSet> ConsentCore::Subjects(absl::string_view subject_id, StreamReads* reads) {
  RETURN_IF_ERROR(storage::ValidateToken(subject_id, "subject id"));
  std::optional<CachedSubjects> hit;
  {
    absl::MutexLock lock(&folds_mu_);
    if (auto it = subjects_.find(subject_id); it != subjects_.end()) hit = it->second;
  }
  if (hit.has_value()) {
    ASSIGN_OR_RETURN(bool current, StillCurrent(hit->reads));
    if (current) {
      if (reads != nullptr) reads->insert(reads->end(), hit->reads.begin(), hit->reads.end());
      return hit->set;
    }
  }
  StreamReads own;
  ASSIGN_OR_RETURN(SubjectSet set, FollowSubjects(subject_id, &own));
  {
    absl::MutexLock lock(&folds_mu_);
    if (subjects_.size() >= kMaxCachedFolds) subjects_.clear();  // bounded
    subjects_[subject_id] = CachedSubjects{set, own};
  }
  if (reads != nullptr) reads->insert(reads->end(), own.begin(), own.end());
  return set;
}

absl::StatusOr<SubjectSet> ConsentCore::FollowSubjects(absl::string_view subject_id,
                                                       StreamReads* reads) {
  SubjectSet set;
  std::string current(subject_id);
  std::vector<v1::Event> events;
  for (int hop = 0;; ++hop) {
    if (hop > kMaxMergeHops) {
      return absl::DataLossError(absl::StrCat("subject ", subject_id, " merges in a loop"));
    }
    // Headers first: the types say whether any payload is needed (merges).
    ASSIGN_OR_RETURN(events, storage::ReadWholeStream(ledger_, SubjectStream(current),
                                                      /*include_payloads=*/false));
    if (events.empty()) {
      if (hop == 0) return absl::NotFoundError(absl::StrCat("no subject ", subject_id));
      return absl::DataLossError(absl::StrCat("subject ", current, " was merged into but is gone"));
    }
    const bool merges = std::any_of(events.begin(), events.end(), [](const v1::Event& e) {
      return e.header().type() == names::event::kMergeSubjects ||
             e.header().type() == names::event::kSubjectMergedInto ||
             e.header().type() == names::event::kUnmergeSubjects;
    });
    if (merges) {
      ASSIGN_OR_RETURN(events, storage::ReadWholeStream(ledger_, SubjectStream(current)));
    }
    reads->emplace_back(SubjectStream(current), VersionOf(events));
    if (events.back().header().type() != names::event::kSubjectMergedInto) break;
    ASSIGN_OR_RETURN(v1::SubjectMergedInto into, HubPayload<v1::SubjectMergedInto>(events.back()));
    current = into.surviving_subject_id();
  }
  set.survivor = current;
  set.survivor_version = VersionOf(events);
  set.members.push_back(current);
  // Everything merged into the survivor, and into those, and so on.
  std::deque<std::vector<v1::Event>> pending;
  pending.push_back(std::move(events));
  while (!pending.empty()) {
    std::vector<v1::Event> stream = std::move(pending.front());
    pending.pop_front();
    // A subject is a member while its last merge is not undone later
    // (UnmergeSubjects); it may be merged, unmerged and merged again.
    std::map<std::string, size_t> last_merge;
    std::set<std::string> undone;
    for (size_t i = 0; i < stream.size(); ++i) {
      const v1::Event& e = stream[i];
      if (e.header().type() == names::event::kMergeSubjects) {
        ASSIGN_OR_RETURN(v1::MergeSubjects m, SignedPayload<v1::MergeSubjects>(e));
        last_merge[m.merged_subject_id()] = i;
        undone.erase(m.merged_subject_id());
      } else if (e.header().type() == names::event::kUnmergeSubjects) {
        ASSIGN_OR_RETURN(v1::UnmergeSubjects u, SignedPayload<v1::UnmergeSubjects>(e));
        undone.insert(u.merged_subject_id());
      }
    }
    for (size_t i = 0; i < stream.size(); ++i) {
      const v1::Event& e = stream[i];
      if (e.header().type() != names::event::kMergeSubjects) continue;
      ASSIGN_OR_RETURN(v1::MergeSubjects m, SignedPayload<v1::MergeSubjects>(e));
      if (undone.contains(m.merged_subject_id()) || last_merge[m.merged_subject_id()] != i)
        continue;
      if (set.members.size() >= kMaxMembers) {
        return absl::ResourceExhaustedError(
            absl::StrCat("subject ", set.survivor, " has more than ", kMaxMembers, " merged ids"));
      }
      set.members.push_back(m.merged_subject_id());
      ASSIGN_OR_RETURN(std::vector<v1::Event> merged,
                       storage::ReadWholeStream(ledger_, SubjectStream(m.merged_subject_id())));
      reads->emplace_back(SubjectStream(m.merged_subject_id()), VersionOf(merged));
      pending.push_back(std::move(merged));
    }
  }
  return set;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanLink(const trust::VerifiedEnvelope& v,
                                                        absl::string_view bytes) {
  const auto& p = static_cast<const v1::LinkIdentifier&>(*v.payload);
  const std::string& sender = v.envelope.sender_agency();
  RETURN_IF_ERROR(ValidateIdentifier(p.identifier()));
  RETURN_IF_ERROR(RequireAuthority(sender, p.identifier()));
  ASSIGN_OR_RETURN(SubjectSet set, RelatedSubjects(sender, p.subject_id()));
  const std::string ident = IdentifierStream(p.identifier());
  ASSIGN_OR_RETURN(std::vector<v1::Event> claimed, storage::ReadWholeStream(ledger_, ident));
  if (!claimed.empty()) {
    ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(claimed.front()));
    ASSIGN_OR_RETURN(SubjectSet owner, Subjects(ref.subject_id()));
    if (owner.survivor == set.survivor) {
      return absl::AlreadyExistsError(
          absl::StrCat("the identifier is already linked to subject ", set.survivor));
    }
    // The authority is the sender's own, so the other subject is one it may know of.
    return absl::FailedPreconditionError(
        absl::StrCat("the identifier belongs to subject ", owner.survivor, ", not ", set.survivor,
                     "; if they are one person, merge the subjects (MergeSubjects)"));
  }
  v1::AppendRequest req;
  AddEvent(&req, SubjectStream(set.survivor), names::event::kLinkIdentifier, set.survivor,
           std::string(bytes));
  v1::SubjectRef ref;
  ref.set_subject_id(set.survivor);
  AddEvent(&req, ident, names::event::kIdentifierClaimed, set.survivor, ref.SerializeAsString());
  Expect(&req, SubjectStream(set.survivor), set.survivor_version);
  Expect(&req, ident, 0);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanMerge(const trust::VerifiedEnvelope& v,
                                                         absl::string_view bytes) {
  const auto& p = static_cast<const v1::MergeSubjects&>(*v.payload);
  if (p.reason().empty()) return absl::InvalidArgumentError("a merge states its reason");
  const std::string& sender = v.envelope.sender_agency();
  ASSIGN_OR_RETURN(SubjectSet survivor, RelatedSubjects(sender, p.surviving_subject_id()));
  ASSIGN_OR_RETURN(SubjectSet merged, RelatedSubjects(sender, p.merged_subject_id()));
  if (survivor.survivor != p.surviving_subject_id()) {
    return absl::FailedPreconditionError(absl::StrCat("subject ", p.surviving_subject_id(),
                                                      " was merged into ", survivor.survivor,
                                                      "; merge into that one"));
  }
  if (merged.survivor != p.merged_subject_id()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "subject ", p.merged_subject_id(), " was already merged into ", merged.survivor));
  }
  if (survivor.survivor == merged.survivor)
    return absl::InvalidArgumentError("a subject cannot be merged into itself");
  v1::AppendRequest req;
  AddEvent(&req, SubjectStream(survivor.survivor), names::event::kMergeSubjects, survivor.survivor,
           std::string(bytes));
  v1::SubjectMergedInto into;
  into.set_surviving_subject_id(survivor.survivor);
  AddEvent(&req, SubjectStream(merged.survivor), names::event::kSubjectMergedInto, merged.survivor,
           into.SerializeAsString());
  Expect(&req, SubjectStream(survivor.survivor), survivor.survivor_version);
  Expect(&req, SubjectStream(merged.survivor), merged.survivor_version);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanUnmerge(const trust::VerifiedEnvelope& v,
                                                           absl::string_view bytes) {
  const auto& p = static_cast<const v1::UnmergeSubjects&>(*v.payload);
  if (p.reason().empty()) return absl::InvalidArgumentError("an unmerge states its reason");
  RETURN_IF_ERROR(storage::ValidateToken(p.merged_subject_id(), "subject id"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> merged,
                   storage::ReadWholeStream(ledger_, SubjectStream(p.merged_subject_id())));
  bool into = false;
  if (!merged.empty() && merged.back().header().type() == names::event::kSubjectMergedInto) {
    ASSIGN_OR_RETURN(v1::SubjectMergedInto m, HubPayload<v1::SubjectMergedInto>(merged.back()));
    into = m.surviving_subject_id() == p.surviving_subject_id();
  }
  if (!into) {
    return absl::FailedPreconditionError(
        absl::StrCat("subject ", p.merged_subject_id(), " is not merged into ",
                     p.surviving_subject_id(), " now; nothing to undo"));
  }
  ASSIGN_OR_RETURN(std::vector<v1::Event> survivor,
                   storage::ReadWholeStream(ledger_, SubjectStream(p.surviving_subject_id()),
                                            /*include_payloads=*/false));
  v1::AppendRequest req;
  AddEvent(&req, SubjectStream(p.surviving_subject_id()), names::event::kUnmergeSubjects,
           p.surviving_subject_id(), std::string(bytes));
  v1::SubjectRef ref;
  ref.set_subject_id(p.surviving_subject_id());
  AddEvent(&req, SubjectStream(p.merged_subject_id()), names::event::kSubjectUnmerged,
           p.merged_subject_id(), ref.SerializeAsString());
  Expect(&req, SubjectStream(p.surviving_subject_id()), VersionOf(survivor));
  Expect(&req, SubjectStream(p.merged_subject_id()), VersionOf(merged));
  return req;
}

absl::Status ConsentCore::RequireAuthority(absl::string_view agency,
                                           const v1::Identifier& id) const {
  if (directory_->Authority(agency, id.authority()).holds) return absl::OkStatus();
  // The same answer whether or not the hub knows the identifier.
  return absl::PermissionDeniedError(
      absl::StrCat("agency ", agency, " does not hold the identifier authority ", id.authority(),
                   "; an agency resolves and links identifiers of its own authorities only"));
}

bool ConsentCore::OwnIdentifier(absl::string_view agency, const v1::Identifier& id) const {
  const directory::AuthorityUse use = directory_->Authority(agency, id.authority());
  return use.holds && !use.shared;
}

absl::StatusOr<bool> ConsentCore::HasRelationship(absl::string_view agency, const SubjectSet& set) {
  if (IsCompliance(agency)) return true;
  for (const std::string& member : set.members) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, SubjectStream(member)));
    for (const v1::Event& e : events) {
      const std::string& type = e.header().type();
      if (type == names::event::kSubjectCreated) {
        ASSIGN_OR_RETURN(v1::SubjectCreated c, HubPayload<v1::SubjectCreated>(e));
        if (c.created_by_agency() != agency) continue;
        for (const v1::Identifier& id : c.identifiers()) {
          if (OwnIdentifier(agency, id)) return true;
        }
      } else if (type == names::event::kLinkIdentifier) {
        v1::Envelope env;
        ASSIGN_OR_RETURN(v1::LinkIdentifier l, SignedPayload<v1::LinkIdentifier>(e, &env));
        if (env.sender_agency() == agency && OwnIdentifier(agency, l.identifier())) return true;
      }
    }
    ASSIGN_OR_RETURN(bool open, HasOpenReferral(agency, member));
    if (open) return true;
  }
  return false;
}

absl::StatusOr<bool> ConsentCore::HasOpenReferral(absl::string_view agency,
                                                  absl::string_view subject_id) {
  struct Referral {
    bool open = false;
    std::string recipient;  // the current one
  };
  std::map<std::string, Referral> referrals;
  v1::ReadIndexRequest q;
  q.set_subject(std::string(subject_id));
  q.set_limit(1000);
  q.set_include_payloads(true);
  while (true) {
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(q));
    for (const v1::Event& e : page.events()) {
      q.set_after_seq(e.header().seq());
      if (!absl::StartsWith(e.header().stream(), names::stream::kReferralPrefix)) continue;
      Referral& r = referrals[names::stream::ReferralKeyOf(e.header().stream())];
      const std::string& type = e.header().type();
      if (type == names::event::kReferralSubmitted) {
        r.open = true;
      } else if (type == names::event::kReferralRouted) {
        ASSIGN_OR_RETURN(v1::ReferralRouted routed, HubPayload<v1::ReferralRouted>(e));
        r.recipient = routed.recipient_agency();
      } else if (type == names::event::kReferralUnassigned) {
        r.recipient.clear();
      } else if (type == names::event::kStatusChanged) {
        ASSIGN_OR_RETURN(v1::UpdateReferralStatus u, SignedPayload<v1::UpdateReferralStatus>(e));
        // Terminal as in services/referral/lifecycle.h; a rejection that is
        // rerouted is followed by a new routing, which opens it again.
        const v1::TaskStatus t = u.status();
        if (t == v1::TASK_COMPLETED || t == v1::TASK_CANCELLED || t == v1::TASK_FAILED ||
            t == v1::TASK_ENTERED_IN_ERROR || t == v1::TASK_REJECTED) {
          r.open = false;
        }
        if (t == v1::TASK_REJECTED) r.recipient.clear();
      }
      if (type == names::event::kReferralRouted) r.open = true;
    }
    if (!page.more() || page.events().empty()) break;
  }
  const std::string own = absl::StrCat(agency, "/");
  for (const auto& [key, r] : referrals) {
    if (r.open && (absl::StartsWith(key, own) || r.recipient == agency)) return true;
  }
  return false;
}

absl::StatusOr<SubjectSet> ConsentCore::RelatedSubjects(absl::string_view agency,
                                                        absl::string_view subject_id) {
  // A subject that does not exist and one the agency has nothing to do with
  // are answered alike.
  const absl::Status unrelated = absl::PermissionDeniedError(absl::StrCat(
      "agency ", agency, " has no relationship to subject ", subject_id,
      " (an identifier it linked of an authority of its own, or a referral about them)"));
  absl::StatusOr<SubjectSet> set = Subjects(subject_id);
  if (absl::IsNotFound(set.status())) return IsCompliance(agency) ? set.status() : unrelated;
  RETURN_IF_ERROR(set.status());
  ASSIGN_OR_RETURN(bool related, HasRelationship(agency, *set));
  if (!related) return unrelated;
  return set;
}

absl::StatusOr<PlannedSubject> ConsentCore::PlanResolve(const v1::ResolveSubjectRequest& req,
                                                        absl::string_view caller) {
  std::optional<v1::AgencyRecord> a = directory_->Get(caller);
  if (!a.has_value() || !a->active()) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", caller, " is not an active agency of this hub"));
  }
  if (req.identifiers().empty() || req.identifiers_size() > kMaxIdentifiers)
    return absl::InvalidArgumentError("give 1 to 8 identifiers of one person");
  // A compliance office may look a person up by any agency's identifier
  // (to answer that person's request), never create one.
  bool foreign = false;
  for (const v1::Identifier& id : req.identifiers())
    foreign |= !directory_->Authority(caller, id.authority()).holds;
  const bool compliance_lookup = foreign && IsCompliance(caller);
  const bool lookup_only = compliance_lookup || req.lookup_only();
  std::set<std::string> streams;
  for (const v1::Identifier& id : req.identifiers()) {
    RETURN_IF_ERROR(ValidateIdentifier(id));
    if (!compliance_lookup) RETURN_IF_ERROR(RequireAuthority(caller, id));
    if (!streams.insert(IdentifierStream(id)).second)
      return absl::InvalidArgumentError("the same identifier is given twice");
  }
  std::set<std::string> survivors;
  std::vector<int> unknown;
  for (int i = 0; i < req.identifiers_size(); ++i) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> claimed,
                     storage::ReadWholeStream(ledger_, IdentifierStream(req.identifiers(i))));
    if (claimed.empty()) {
      unknown.push_back(i + 1);
      continue;
    }
    ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(claimed.front()));
    ASSIGN_OR_RETURN(SubjectSet set, Subjects(ref.subject_id()));
    survivors.insert(set.survivor);
  }
  if (survivors.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("ambiguous: the identifiers belong to ", survivors.size(),
                     " different subjects (", absl::StrJoin(survivors, ", "),
                     "); the hub does not guess. If they are one person, merge the subjects"));
  }
  if (survivors.size() == 1 && !unknown.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("identifier #", absl::StrJoin(unknown, ", #"), " is not linked to subject ",
                     *survivors.begin(),
                     " that the others name; link it (LinkIdentifier) if it is the same person"));
  }
  if (lookup_only && survivors.empty())
    return absl::NotFoundError("no person with these identifiers is known to the hub");
  PlannedSubject out;
  if (survivors.size() == 1) {
    out.subject_id = *survivors.begin();
    return out;
  }
  // Nobody knows this person yet: a new subject, with every identifier.
  out.subject_id = options_.new_subject_id();
  const std::string& id = out.subject_id;
  RETURN_IF_ERROR(storage::ValidateToken(id, "new subject id"));
  v1::SubjectCreated created;
  created.set_subject_id(id);
  *created.mutable_identifiers() = req.identifiers();
  created.set_created_by_agency(std::string(caller));
  AddEvent(&out.creation, SubjectStream(id), names::event::kSubjectCreated, id,
           created.SerializeAsString())
      ->add_agencies(std::string(caller));
  Expect(&out.creation, SubjectStream(id), 0);
  v1::SubjectRef ref;
  ref.set_subject_id(id);
  for (const std::string& stream : streams) {
    AddEvent(&out.creation, stream, names::event::kIdentifierClaimed, id, ref.SerializeAsString());
    Expect(&out.creation, stream, 0);
  }
  return out;
}

absl::StatusOr<v1::ResolveSubjectResponse> ConsentCore::Resolve(
    const v1::ResolveSubjectRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "ResolveSubject"));
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(PlannedSubject planned, PlanResolve(req, caller));
    v1::ResolveSubjectResponse resp;
    resp.set_subject_id(planned.subject_id);
    if (planned.creation.events().empty()) {
      if (IsCompliance(caller) && caller != directory::kHubAgency) {
        // A compliance lookup is a read about the person.
        RETURN_IF_ERROR(
            RecordRead(who, "ConsentService.ResolveSubject", req, resp.subject_id(), "lookup"));
      }
      return resp;
    }
    absl::StatusOr<v1::Commit> commit = ledger_->Append(std::move(planned.creation));
    if (absl::IsFailedPrecondition(commit.status())) continue;  // created meanwhile: resolve again
    RETURN_IF_ERROR(commit.status());
    resp.set_seq(commit->last_seq());
    return resp;
  }
  return absl::AbortedError("the identifiers changed concurrently three times; try again");
}

}  // namespace careloop::consent
