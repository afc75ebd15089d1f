#include "services/consent/consent_core.h"

#include <openssl/rand.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/sha256.h"
#include "services/common/status.h"
#include "storage/validate.h"

namespace careloop::consent {
namespace {

constexpr absl::Duration kProjectionWait = absl::Seconds(10);
constexpr int kMaxMergeHops = 64;
constexpr size_t kMaxMembers = 1024;
constexpr size_t kMaxCachedFolds = 20000;  // subjects whose consent fold is kept
constexpr int kMaxRuleDepth = 8;
constexpr int kMaxRules = 256;
constexpr int kMaxIdentifiers = 8;
constexpr int kMaxCategories = 32;
constexpr char kBreakGlassList[] = "breakglass";
constexpr char kComplianceRole[] = "compliance";
constexpr char kEmergencyRole[] = "emergency";

std::string HashHex(std::initializer_list<absl::string_view> parts, size_t hex_chars) {
  return HexEncode(AsStringView(Sha256Parts(parts))).substr(0, hex_chars);
}

std::string DefaultSubjectId() {
  unsigned char b[8];
  CARELOOP_CHECK(RAND_bytes(b, sizeof b) == 1);
  return "s-" + HexEncode(absl::string_view(reinterpret_cast<char*>(b), sizeof b));
}

absl::Status ValidateIdentifier(const v1::Identifier& id) {
  if (id.authority().empty() || id.authority().size() > 128) {
    return absl::InvalidArgumentError("an identifier's authority must be 1 to 128 bytes");
  }
  for (char c : id.authority()) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '/' || c == '@' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "an identifier's authority may hold only [A-Za-z0-9._:/@-]");
    }
  }
  // The value is personal data: the message never repeats it.
  if (id.value().empty() || id.value().size() > 256) {
    return absl::InvalidArgumentError("an identifier's value must be 1 to 256 bytes");
  }
  for (char c : id.value()) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("an identifier's value may not hold control characters");
    }
  }
  return absl::OkStatus();
}

uint64_t VersionOf(const std::vector<v1::Event>& events) {
  return events.empty() ? 0 : events.back().header().stream_version();
}

absl::Status Corrupt(const v1::Event& e, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("event seq ", e.header().seq(), " (", e.header().type(), ") ", what));
}

absl::StatusOr<v1::Envelope> EnvelopeOf(const v1::Event& e) {
  v1::Envelope env;
  if (!env.ParseFromString(e.payload())) return Corrupt(e, "holds no envelope");
  return env;
}

template <typename T>
absl::StatusOr<T> SignedPayload(const v1::Event& e, v1::Envelope* env_out = nullptr) {
  ASSIGN_OR_RETURN(v1::Envelope env, EnvelopeOf(e));
  T p;
  if (!p.ParseFromString(env.payload())) return Corrupt(e, "holds a payload that does not parse");
  if (env_out != nullptr) *env_out = std::move(env);
  return p;
}

template <typename T>
absl::StatusOr<T> HubPayload(const v1::Event& e) {
  T p;
  if (!p.ParseFromString(e.payload())) return Corrupt(e, "holds a payload that does not parse");
  return p;
}

v1::EventInput* AddEvent(v1::AppendRequest* req, std::string stream, absl::string_view type,
                         absl::string_view subject, std::string payload) {
  v1::EventInput* e = req->add_events();
  e->set_stream(std::move(stream));
  e->set_type(std::string(type));
  e->set_subject(std::string(subject));
  e->set_payload(std::move(payload));
  return e;
}

void Expect(v1::AppendRequest* req, std::string stream, uint64_t version) {
  v1::Precondition* p = req->add_preconditions();
  p->set_stream(std::move(stream));
  if (version == 0) {
    p->set_must_not_exist(true);
  } else {
    p->set_expected_version(version);
  }
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list, absl::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

// The last six calendar years before `to` (the §164.528 period).
absl::Time SixYearsBefore(absl::Time to) {
  absl::CivilSecond c = absl::ToCivilSecond(to, absl::UTCTimeZone());
  absl::CivilSecond back(c.year() - 6, c.month(), c.day(), c.hour(), c.minute(), c.second());
  return absl::FromCivil(back, absl::UTCTimeZone()) +
         (to - absl::FromCivil(c, absl::UTCTimeZone()));
}

}  // namespace

// ---- Names and ids ----

const std::set<std::string>& KnownPurposes() {
  static const std::set<std::string> purposes = {
      "care-coordination", "treatment", "emergency-treatment", "payment", "operations", "research",
      "public-health",     "legal",     "subject-request"};
  return purposes;
}

const std::set<std::string>& TreatmentPaymentOperations() {
  static const std::set<std::string> tpo = {"care-coordination", "treatment", "emergency-treatment",
                                            "payment", "operations"};
  return tpo;
}

std::string SubjectStream(absl::string_view id) { return absl::StrCat("subject/", id); }
std::string ConsentStream(absl::string_view id) { return absl::StrCat("consent/", id); }
std::string DisclosureStream(absl::string_view id) { return absl::StrCat("disclosure/", id); }

std::string IdentifierStream(const v1::Identifier& id) {
  // Authority and value hold no NUL (ValidateIdentifier), so NUL separates.
  const absl::string_view nul("\0", 1);
  return absl::StrCat(
      "ident/", HashHex({"careloop.v1.identifier", nul, id.authority(), nul, id.value()}, 64));
}

std::string ConsentIdFor(absl::string_view sender, absl::string_view message_id) {
  const absl::string_view nul("\0", 1);
  return absl::StrCat("c-", HashHex({"careloop.v1.consent-id", nul, sender, nul, message_id}, 20));
}

std::string BreakGlassIdFor(absl::string_view sender, absl::string_view message_id) {
  const absl::string_view nul("\0", 1);
  return absl::StrCat("bg-",
                      HashHex({"careloop.v1.break-glass-id", nul, sender, nul, message_id}, 20));
}

trust::RpcPolicy ConsentPolicy(absl::Duration max_clock_skew) {
  trust::RpcPolicy p;
  p.max_skew = max_clock_skew;
  p.roles_by_payload_type["careloop.v1.LinkIdentifier"] = {"sender", "receiver", "admin"};
  p.roles_by_payload_type["careloop.v1.MergeSubjects"] = {"admin", kComplianceRole,
                                                          directory::kHubAdminRole};
  p.roles_by_payload_type["careloop.v1.GrantConsent"] = {"sender", "receiver", "admin"};
  p.roles_by_payload_type["careloop.v1.AmendConsent"] = {"sender", "receiver", "admin"};
  p.roles_by_payload_type["careloop.v1.RevokeConsent"] = {"sender", "receiver", "admin",
                                                          kComplianceRole};
  p.roles_by_payload_type["careloop.v1.BreakGlass"] = {kEmergencyRole};
  p.roles_by_payload_type["careloop.v1.ReviewBreakGlass"] = {kComplianceRole};
  return p;
}

absl::StatusOr<v1::AppendRequest> DisclosureAppend(const v1::CheckConsentResponse& decision,
                                                   v1::DisclosureRecorded d) {
  if (d.categories().empty())
    return absl::InvalidArgumentError("a disclosure names at least one category");
  if (!d.recipient_agency().empty() && d.recipient_agency() != decision.recipient_agency()) {
    return absl::InvalidArgumentError("the disclosure's recipient is not the decision's");
  }
  if (!d.purpose().empty() && d.purpose() != decision.purpose()) {
    return absl::InvalidArgumentError("the disclosure's purpose is not the decision's");
  }
  std::set<std::string> consents;
  std::string break_glass;
  for (const std::string& category : d.categories()) {
    const v1::CategoryDecision* found = nullptr;
    for (const auto& c : decision.decisions()) {
      if (c.category() == category) found = &c;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the decision did not cover the category ", category));
    }
    if (!found->permit()) {
      return absl::PermissionDeniedError(
          absl::StrCat("the category ", category, " may not be disclosed: ", found->reason()));
    }
    consents.insert(found->consent_ids().begin(), found->consent_ids().end());
    if (!found->break_glass_id().empty()) break_glass = found->break_glass_id();
  }
  d.set_subject_id(decision.subject_id());
  d.set_recipient_agency(decision.recipient_agency());
  d.set_purpose(decision.purpose());
  d.clear_consent_ids();
  for (const std::string& c : consents) d.add_consent_ids(c);
  d.set_break_glass_id(break_glass);
  if (d.authority().empty()) d.set_authority(break_glass.empty() ? "consent" : "break-glass");
  v1::AppendRequest req;
  v1::EventInput* e = AddEvent(&req, DisclosureStream(decision.subject_id()), "DisclosureRecorded",
                               decision.subject_id(), d.SerializeAsString());
  e->add_agencies(d.recipient_agency());
  if (!d.disclosing_agency().empty() && d.disclosing_agency() != d.recipient_agency())
    e->add_agencies(d.disclosing_agency());
  for (const v1::StreamVersion& v : decision.read_versions()) Expect(&req, v.stream(), v.version());
  return req;
}

// ---- ConsentCore ----

ConsentCore::ConsentCore(storage::Ledger* ledger, directory::DirectoryState* directory,
                         storage::ProjectionRunner* directory_runner, Clock* clock,
                         ConsentOptions options)
    : ledger_(ledger),
      directory_(directory),
      directory_runner_(directory_runner),
      clock_(clock),
      options_(std::move(options)),
      policy_(ConsentPolicy(options_.max_clock_skew)),
      seen_(ledger) {
  if (!options_.new_subject_id) options_.new_subject_id = DefaultSubjectId;
}

bool ConsentCore::IsCompliance(absl::string_view agency) const {
  if (agency == directory::kHubAgency) return true;
  std::optional<v1::AgencyRecord> r = directory_->Get(agency);
  return r.has_value() && r->active() && Contains(r->profile().roles(), kComplianceRole);
}

absl::Status ConsentCore::RequireCompliance(absl::string_view caller,
                                            absl::string_view what) const {
  if (IsCompliance(caller)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what, " are for compliance agencies and the hub's own services; ",
                   caller.empty() ? std::string("the caller has no agency identity")
                                  : absl::StrCat("agency ", caller, " is neither")));
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
    ASSIGN_OR_RETURN(events,
                     storage::ReadWholeStream(ledger_, SubjectStream(current), /*payloads=*/false));
    if (events.empty()) {
      if (hop == 0) return absl::NotFoundError(absl::StrCat("no subject ", subject_id));
      return absl::DataLossError(absl::StrCat("subject ", current, " was merged into but is gone"));
    }
    const bool merges = std::any_of(events.begin(), events.end(), [](const v1::Event& e) {
      return e.header().type() == "MergeSubjects" || e.header().type() == "SubjectMergedInto";
    });
    if (merges) {
      ASSIGN_OR_RETURN(events, storage::ReadWholeStream(ledger_, SubjectStream(current)));
    }
    reads->emplace_back(SubjectStream(current), VersionOf(events));
    if (events.back().header().type() != "SubjectMergedInto") break;
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
    for (const v1::Event& e : stream) {
      if (e.header().type() != "MergeSubjects") continue;
      ASSIGN_OR_RETURN(v1::MergeSubjects m, SignedPayload<v1::MergeSubjects>(e));
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
  std::vector<v1::Event> all;
  for (const std::string& m : st.subjects.members) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, ConsentStream(m)));
    v1::StreamVersion v;
    v.set_stream(ConsentStream(m));
    v.set_version(VersionOf(events));
    st.consent_versions.push_back(v);
    reads.emplace_back(ConsentStream(m), v.version());
    for (v1::Event& e : events) all.push_back(std::move(e));
  }
  if (st.subjects.members.size() > 1) {
    std::sort(all.begin(), all.end(), [](const v1::Event& a, const v1::Event& b) {
      return a.header().seq() < b.header().seq();
    });
  }
  for (const v1::Event& e : all) {
    const std::string& type = e.header().type();
    const uint64_t seq = e.header().seq();
    const int64_t at = e.header().commit_time_unix_nanos();
    if (type == "GrantConsent") {
      v1::Envelope env;
      ASSIGN_OR_RETURN(v1::GrantConsent g, SignedPayload<v1::GrantConsent>(e, &env));
      ConsentView view;
      v1::Consent* c = view.record.mutable_consent();
      *c = g.consent();
      c->set_consent_id(ConsentIdFor(env.sender_agency(), env.message_id()));
      c->set_subject_id(st.subjects.survivor);
      c->set_recording_agency(env.sender_agency());
      c->set_recording_actor(env.actor().user_id());
      c->set_status(v1::CONSENT_ACTIVE);
      view.record.set_granted_seq(seq);
      view.record.set_last_change_seq(seq);
      view.stream = e.header().stream();
      st.consents[c->consent_id()] = std::move(view);
    } else if (type == "AmendConsent" || type == "RevokeConsent") {
      std::string id;
      v1::Envelope env;
      v1::AmendConsent amend;
      v1::RevokeConsent revoke;
      if (type == "AmendConsent") {
        ASSIGN_OR_RETURN(amend, SignedPayload<v1::AmendConsent>(e));
        id = amend.consent_id();
      } else {
        ASSIGN_OR_RETURN(revoke, SignedPayload<v1::RevokeConsent>(e, &env));
        id = revoke.consent_id();
      }
      auto it = st.consents.find(id);
      if (it == st.consents.end()) return Corrupt(e, "changes an unknown consent");
      v1::Consent* c = it->second.record.mutable_consent();
      if (type == "AmendConsent") {
        const v1::Consent& n = amend.consent();
        *c->mutable_grantor() = n.grantor();
        *c->mutable_provision() = n.provision();
        *c->mutable_period() = n.period();
        *c->mutable_evidence() = n.evidence();
        *c->mutable_part2() = n.part2();
        c->set_hipaa_authorization(n.hipaa_authorization());
      } else {
        c->set_status(revoke.entered_in_error() ? v1::CONSENT_ENTERED_IN_ERROR
                                                : v1::CONSENT_REVOKED);
        c->set_revoked_unix_nanos(at);
        c->set_revocation_reason(revoke.reason());
        it->second.record.set_revoked_by_agency(env.sender_agency());
        it->second.record.set_revoked_by_user(env.actor().user_id());
      }
      it->second.record.set_last_change_seq(seq);
    } else if (type == "BreakGlassInvoked") {
      ASSIGN_OR_RETURN(v1::BreakGlassRecord r, HubPayload<v1::BreakGlassRecord>(e));
      st.break_glass.push_back(std::move(r));
    } else if (type != "ConsentRevocationNotice") {
      return Corrupt(e, "has a type the consent service does not know");
    }
  }
  if (!with_disclosures) {
    absl::MutexLock lock(&folds_mu_);
    if (folds_.size() >= kMaxCachedFolds) folds_.clear();  // bounded
    folds_[subject_id] = CachedFold{std::make_shared<const SubjectState>(st), std::move(reads)};
    return st;
  }
  for (const std::string& m : st.subjects.members) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, DisclosureStream(m)));
    v1::StreamVersion v;
    v.set_stream(DisclosureStream(m));
    v.set_version(VersionOf(events));
    st.disclosure_versions.push_back(v);
    for (const v1::Event& e : events) {
      ASSIGN_OR_RETURN(v1::DisclosureRecorded d, HubPayload<v1::DisclosureRecorded>(e));
      for (const std::string& cid : d.consent_ids()) {
        auto it = st.consents.find(cid);
        if (it != st.consents.end() && !Contains(it->second.record.holders(), d.recipient_agency()))
          it->second.record.add_holders(d.recipient_agency());
      }
      d.set_disclosed_unix_nanos(e.header().commit_time_unix_nanos());
      d.set_subject_id(m);
      st.disclosures.emplace_back(e.header().seq(), std::move(d));
    }
  }
  std::sort(st.disclosures.begin(), st.disclosures.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return st;
}

absl::StatusOr<std::string> ConsentCore::LocateConsent(absl::string_view consent_id) {
  RETURN_IF_ERROR(storage::ValidateToken(consent_id, "consent id"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                   storage::ReadWholeStream(ledger_, absl::StrCat("consent-id/", consent_id)));
  if (events.empty()) return absl::NotFoundError(absl::StrCat("no consent ", consent_id));
  ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(events.front()));
  return ref.subject_id();
}

// ---- Validation ----

absl::Status ConsentCore::ValidateRule(const v1::ConsentRule& r, int depth, int* count,
                                       bool* names_part2) const {
  if (depth > kMaxRuleDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("consent rules nest at most ", kMaxRuleDepth, " deep"));
  }
  if (++*count > kMaxRules)
    return absl::InvalidArgumentError(absl::StrCat("a consent has at most ", kMaxRules, " rules"));
  for (const v1::RecipientSpec& s : r.recipients()) {
    switch (s.recipient_case()) {
      case v1::RecipientSpec::kAgencyId:
        if (!directory_->Get(s.agency_id()).has_value()) {
          return absl::NotFoundError(absl::StrCat("the consent names agency ", s.agency_id(),
                                                  ", which is not registered"));
        }
        break;
      case v1::RecipientSpec::kAgencyKind:
        if (s.agency_kind() == v1::AGENCY_KIND_UNSPECIFIED)
          return absl::InvalidArgumentError("a recipient kind must be given");
        break;
      case v1::RecipientSpec::kNetwork:
        if (!s.network()) return absl::InvalidArgumentError("a network recipient must be true");
        break;
      default:
        return absl::InvalidArgumentError("a recipient names an agency, a kind or the network");
    }
  }
  for (const std::string& p : r.purposes()) {
    if (!KnownPurposes().contains(p))
      return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", p, "'"));
  }
  for (const std::string& c : r.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
    if (c == "sud-part2" && r.permit()) *names_part2 = true;
  }
  if (r.has_period() && r.period().start_unix_nanos() != 0 && r.period().end_unix_nanos() != 0 &&
      r.period().end_unix_nanos() <= r.period().start_unix_nanos()) {
    return absl::InvalidArgumentError("a rule's period must end after it starts");
  }
  for (const v1::ConsentRule& ex : r.exceptions()) {
    if (ex.permit() == r.permit()) {
      return absl::InvalidArgumentError(
          "an exception must reverse its rule (a deny inside a permit, a permit inside a deny)");
    }
    RETURN_IF_ERROR(ValidateRule(ex, depth + 1, count, names_part2));
  }
  return absl::OkStatus();
}

absl::Status ConsentCore::ValidateConsent(const v1::Consent& c) const {
  switch (c.grantor().kind()) {
    case v1::GRANTOR_SUBJECT:
      break;
    case v1::GRANTOR_PARENT_GUARDIAN:
    case v1::GRANTOR_LEGAL_REPRESENTATIVE:
      if (c.grantor().relationship().empty()) {
        return absl::InvalidArgumentError(
            "a consent granted by a guardian or representative states the relationship");
      }
      break;
    default:
      return absl::InvalidArgumentError(
          "a consent names its grantor: the subject, a parent/guardian or a legal representative");
  }
  if (!c.provision().permit()) {
    return absl::InvalidArgumentError("a consent's root rule is a permit (denies are exceptions)");
  }
  int count = 0;
  bool names_part2 = false;
  RETURN_IF_ERROR(ValidateRule(c.provision(), 0, &count, &names_part2));
  const v1::Period& p = c.period();
  if (p.start_unix_nanos() != 0 && p.end_unix_nanos() != 0 &&
      p.end_unix_nanos() <= p.start_unix_nanos()) {
    return absl::InvalidArgumentError("a consent's period must end after it starts");
  }
  if (c.evidence().sha256().size() != 32 || c.evidence().media_type().empty()) {
    return absl::InvalidArgumentError(
        "a consent carries evidence: the SHA-256 (32 bytes) and media type of the signed form");
  }
  if (names_part2) {
    const v1::Part2Elements& e = c.part2();
    std::vector<std::string> missing;
    if (e.who_may_disclose().empty()) missing.push_back("who_may_disclose");
    if (e.information_description().empty()) missing.push_back("information_description");
    if (e.recipients_description().empty()) missing.push_back("recipients_description");
    if (e.purpose_description().empty()) missing.push_back("purpose_description");
    if (!e.right_to_revoke_acknowledged()) missing.push_back("right_to_revoke_acknowledged");
    if (e.expiration().empty()) missing.push_back("expiration");
    if (!e.signed_() || e.signed_unix_nanos() == 0) missing.push_back("signed/signed_unix_nanos");
    if (!missing.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a consent that permits sud-part2 needs every 42 CFR §2.31 element; missing: ",
          absl::StrJoin(missing, ", ")));
    }
  }
  if (!c.consent_id().empty()) return absl::InvalidArgumentError("the hub assigns consent ids");
  if (c.status() != v1::CONSENT_STATUS_UNSPECIFIED && c.status() != v1::CONSENT_ACTIVE)
    return absl::InvalidArgumentError("a new consent (or an amendment) is active");
  if (c.revoked_unix_nanos() != 0 || !c.revocation_reason().empty())
    return absl::InvalidArgumentError("revocation is its own message (RevokeConsent)");
  return absl::OkStatus();
}

// ---- Submit ----

absl::StatusOr<v1::SubmitEnvelopeResponse> ConsentCore::Submit(absl::string_view bytes) {
  std::string assigned;
  ASSIGN_OR_RETURN(
      directory::Accepted a,
      directory::AcceptSigned(bytes, policy_, *directory_, seen_, ledger_, clock_->Now(),
                              [&](const trust::VerifiedEnvelope& v, absl::string_view b,
                                  absl::Time) { return Plan(v, b, &assigned); }));
  const v1::Envelope& e = a.envelope;
  if (e.payload_type() == "careloop.v1.GrantConsent")
    assigned = ConsentIdFor(e.sender_agency(), e.message_id());
  if (e.payload_type() == "careloop.v1.BreakGlass")
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
  if (sender == directory::kHubAgency && type != "careloop.v1.MergeSubjects") {
    return absl::PermissionDeniedError(
        absl::StrCat("the hub admin does not send ", type, "; the recording agency does"));
  }
  absl::StatusOr<v1::AppendRequest> req;
  if (type == "careloop.v1.LinkIdentifier") {
    req = PlanLink(v, bytes);
  } else if (type == "careloop.v1.MergeSubjects") {
    req = PlanMerge(v, bytes);
  } else if (type == "careloop.v1.GrantConsent") {
    req = PlanGrant(v, bytes, assigned_id);
  } else if (type == "careloop.v1.AmendConsent" || type == "careloop.v1.RevokeConsent") {
    req = PlanAmendOrRevoke(v, bytes);
  } else if (type == "careloop.v1.BreakGlass") {
    req = PlanBreakGlass(v, bytes, assigned_id);
  } else if (type == "careloop.v1.ReviewBreakGlass") {
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

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanLink(const trust::VerifiedEnvelope& v,
                                                        absl::string_view bytes) {
  const auto& p = static_cast<const v1::LinkIdentifier&>(*v.payload);
  RETURN_IF_ERROR(ValidateIdentifier(p.identifier()));
  ASSIGN_OR_RETURN(SubjectSet set, Subjects(p.subject_id()));
  const std::string ident = IdentifierStream(p.identifier());
  ASSIGN_OR_RETURN(std::vector<v1::Event> claimed, storage::ReadWholeStream(ledger_, ident));
  if (!claimed.empty()) {
    ASSIGN_OR_RETURN(v1::SubjectRef ref, HubPayload<v1::SubjectRef>(claimed.front()));
    ASSIGN_OR_RETURN(SubjectSet owner, Subjects(ref.subject_id()));
    if (owner.survivor == set.survivor) {
      return absl::AlreadyExistsError(
          absl::StrCat("the identifier is already linked to subject ", set.survivor));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("the identifier belongs to subject ", owner.survivor, ", not ", set.survivor,
                     "; if they are one person, merge the subjects (MergeSubjects)"));
  }
  v1::AppendRequest req;
  AddEvent(&req, SubjectStream(set.survivor), "LinkIdentifier", set.survivor, std::string(bytes));
  v1::SubjectRef ref;
  ref.set_subject_id(set.survivor);
  AddEvent(&req, ident, "IdentifierClaimed", set.survivor, ref.SerializeAsString());
  Expect(&req, SubjectStream(set.survivor), set.survivor_version);
  Expect(&req, ident, 0);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanMerge(const trust::VerifiedEnvelope& v,
                                                         absl::string_view bytes) {
  const auto& p = static_cast<const v1::MergeSubjects&>(*v.payload);
  if (p.reason().empty()) return absl::InvalidArgumentError("a merge states its reason");
  ASSIGN_OR_RETURN(SubjectSet survivor, Subjects(p.surviving_subject_id()));
  ASSIGN_OR_RETURN(SubjectSet merged, Subjects(p.merged_subject_id()));
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
  AddEvent(&req, SubjectStream(survivor.survivor), "MergeSubjects", survivor.survivor,
           std::string(bytes));
  v1::SubjectMergedInto into;
  into.set_surviving_subject_id(survivor.survivor);
  AddEvent(&req, SubjectStream(merged.survivor), "SubjectMergedInto", merged.survivor,
           into.SerializeAsString());
  Expect(&req, SubjectStream(survivor.survivor), survivor.survivor_version);
  Expect(&req, SubjectStream(merged.survivor), merged.survivor_version);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanGrant(const trust::VerifiedEnvelope& v,
                                                         absl::string_view bytes,
                                                         std::string* assigned_id) {
  const auto& p = static_cast<const v1::GrantConsent&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  const v1::Consent& c = p.consent();
  if (!c.recording_agency().empty() && c.recording_agency() != e.sender_agency())
    return absl::InvalidArgumentError("the recording agency is the envelope's sender");
  if (!c.recording_actor().empty() && c.recording_actor() != e.actor().user_id())
    return absl::InvalidArgumentError("the recording actor is the envelope's actor");
  ASSIGN_OR_RETURN(SubjectSet set, Subjects(c.subject_id()));
  RETURN_IF_ERROR(ValidateConsent(c));
  *assigned_id = ConsentIdFor(e.sender_agency(), e.message_id());
  v1::AppendRequest req;
  AddEvent(&req, ConsentStream(set.survivor), "GrantConsent", set.survivor, std::string(bytes));
  v1::SubjectRef ref;
  ref.set_subject_id(set.survivor);
  const std::string locator = absl::StrCat("consent-id/", *assigned_id);
  AddEvent(&req, locator, "ConsentLocated", set.survivor, ref.SerializeAsString());
  Expect(&req, locator, 0);
  // A merge that lands first would leave the grant under a merged id: still
  // found (merged ids stay members), but keep the order plain.
  Expect(&req, SubjectStream(set.survivor), set.survivor_version);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanAmendOrRevoke(const trust::VerifiedEnvelope& v,
                                                                 absl::string_view bytes) {
  const v1::Envelope& e = v.envelope;
  const bool revoke = e.payload_type() == "careloop.v1.RevokeConsent";
  const std::string consent_id =
      revoke ? static_cast<const v1::RevokeConsent&>(*v.payload).consent_id()
             : static_cast<const v1::AmendConsent&>(*v.payload).consent_id();
  ASSIGN_OR_RETURN(std::string subject, LocateConsent(consent_id));
  ASSIGN_OR_RETURN(SubjectState st, Load(subject, /*with_disclosures=*/revoke));
  auto it = st.consents.find(consent_id);
  if (it == st.consents.end()) return absl::DataLossError("a located consent is missing");
  const v1::ConsentRecord& r = it->second.record;
  const bool recorder = r.consent().recording_agency() == e.sender_agency();
  if (!recorder && !(revoke && IsCompliance(e.sender_agency()))) {
    return absl::PermissionDeniedError(
        absl::StrCat("only the recording agency ", r.consent().recording_agency(),
                     revoke ? " or a compliance agency" : "", " may ", revoke ? "revoke" : "amend",
                     " consent ", consent_id));
  }
  if (r.consent().status() != v1::CONSENT_ACTIVE) {
    return absl::FailedPreconditionError(
        absl::StrCat("consent ", consent_id, " is no longer active (",
                     v1::ConsentStatus_Name(r.consent().status()), ")"));
  }
  v1::AppendRequest req;
  const std::string& survivor = st.subjects.survivor;
  AddEvent(&req, ConsentStream(survivor), trust::ShortTypeName(e.payload_type()), survivor,
           std::string(bytes));
  if (revoke) {
    const auto& p = static_cast<const v1::RevokeConsent&>(*v.payload);
    if (p.reason().empty()) return absl::InvalidArgumentError("a revocation states its reason");
    // One event concerning each agency that holds data under the consent:
    // that is how they are told.
    for (const std::string& holder : r.holders()) {
      v1::ConsentRevocationNotice n;
      n.set_consent_id(consent_id);
      n.set_subject_id(survivor);
      n.set_recipient_agency(holder);
      n.set_revoked_unix_nanos(absl::ToUnixNanos(clock_->Now()));
      n.set_revoked_by_agency(e.sender_agency());
      n.set_revoked_by_user(e.actor().user_id());
      AddEvent(&req, ConsentStream(survivor), "ConsentRevocationNotice", survivor,
               n.SerializeAsString())
          ->add_agencies(holder);
    }
    // A disclosure landing meanwhile would make a holder that gets no notice.
    for (const v1::StreamVersion& d : st.disclosure_versions) Expect(&req, d.stream(), d.version());
  } else {
    const auto& p = static_cast<const v1::AmendConsent&>(*v.payload);
    v1::Consent amended = p.consent();
    amended.clear_subject_id();
    amended.clear_recording_agency();
    amended.clear_recording_actor();
    RETURN_IF_ERROR(ValidateConsent(amended));
  }
  for (const v1::StreamVersion& c : st.consent_versions) Expect(&req, c.stream(), c.version());
  Expect(&req, SubjectStream(survivor), st.subjects.survivor_version);
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanBreakGlass(const trust::VerifiedEnvelope& v,
                                                              absl::string_view bytes,
                                                              std::string* assigned_id) {
  const auto& p = static_cast<const v1::BreakGlass&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  std::optional<v1::AgencyRecord> agency = directory_->Get(e.sender_agency());
  if (!agency.has_value() || !Contains(agency->profile().roles(), kEmergencyRole)) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " does not have the emergency role"));
  }
  if (p.reason().empty()) return absl::InvalidArgumentError("a break-glass states its reason");
  if (!KnownPurposes().contains(p.purpose()))
    return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", p.purpose(), "'"));
  if (p.categories().empty() || p.categories_size() > kMaxCategories)
    return absl::InvalidArgumentError("a break-glass names 1 to 32 categories");
  for (const std::string& c : p.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
  }
  absl::Duration d = p.duration_seconds() == 0 ? options_.default_break_glass
                                               : absl::Seconds(p.duration_seconds());
  if (d <= absl::ZeroDuration() || d > options_.max_break_glass) {
    return absl::InvalidArgumentError(absl::StrCat("a break-glass lasts at most ",
                                                   absl::FormatDuration(options_.max_break_glass)));
  }
  ASSIGN_OR_RETURN(SubjectSet set, Subjects(p.subject_id()));
  *assigned_id = BreakGlassIdFor(e.sender_agency(), e.message_id());
  const absl::Time now = clock_->Now();
  v1::BreakGlassRecord rec;
  rec.set_break_glass_id(*assigned_id);
  rec.set_subject_id(set.survivor);
  rec.set_agency_id(e.sender_agency());
  rec.set_user_id(e.actor().user_id());
  *rec.mutable_categories() = p.categories();
  rec.set_purpose(p.purpose());
  rec.set_reason(p.reason());
  rec.set_from_unix_nanos(absl::ToUnixNanos(now));
  rec.set_until_unix_nanos(absl::ToUnixNanos(now + d));
  std::vector<std::string> compliance;
  for (const v1::AgencyRecord& a : directory_->All()) {
    if (a.active() && Contains(a.profile().roles(), kComplianceRole))
      compliance.push_back(a.agency_id());
  }
  v1::AppendRequest req;
  const std::string detail = absl::StrCat("breakglass/", *assigned_id);
  // The envelope, in the break-glass's own stream (a review appends to it).
  AddEvent(&req, detail, "BreakGlass", set.survivor, std::string(bytes));
  Expect(&req, detail, 0);
  // What decisions read: in the subject's consent stream.
  v1::EventInput* invoked = AddEvent(&req, ConsentStream(set.survivor), "BreakGlassInvoked",
                                     set.survivor, rec.SerializeAsString());
  v1::BreakGlassListed listed;
  listed.set_break_glass_id(*assigned_id);
  listed.set_subject_id(set.survivor);
  listed.set_agency_id(e.sender_agency());
  v1::EventInput* list =
      AddEvent(&req, kBreakGlassList, "BreakGlassListed", set.survivor, listed.SerializeAsString());
  // Each use concerns every compliance agency: that is how they are told.
  for (const std::string& c : compliance) {
    invoked->add_agencies(c);
    list->add_agencies(c);
  }
  return req;
}

absl::StatusOr<v1::AppendRequest> ConsentCore::PlanReview(const trust::VerifiedEnvelope& v,
                                                          absl::string_view bytes) {
  const auto& p = static_cast<const v1::ReviewBreakGlass&>(*v.payload);
  const v1::Envelope& e = v.envelope;
  if (!IsCompliance(e.sender_agency())) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", e.sender_agency(), " is not a compliance agency"));
  }
  RETURN_IF_ERROR(storage::ValidateToken(p.break_glass_id(), "break-glass id"));
  const std::string detail = absl::StrCat("breakglass/", p.break_glass_id());
  ASSIGN_OR_RETURN(std::vector<v1::Event> events, storage::ReadWholeStream(ledger_, detail));
  if (events.empty())
    return absl::NotFoundError(absl::StrCat("no break-glass ", p.break_glass_id()));
  if (events.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("break-glass ", p.break_glass_id(), " is already reviewed"));
  }
  v1::Envelope invoked;
  ASSIGN_OR_RETURN(v1::BreakGlass bg, SignedPayload<v1::BreakGlass>(events.front(), &invoked));
  const std::string subject = events.front().header().subject();
  v1::AppendRequest req;
  AddEvent(&req, detail, "ReviewBreakGlass", subject, std::string(bytes))
      ->add_agencies(invoked.sender_agency());
  Expect(&req, detail, 1);
  v1::BreakGlassListed listed;
  listed.set_break_glass_id(p.break_glass_id());
  listed.set_subject_id(subject);
  listed.set_agency_id(invoked.sender_agency());
  listed.set_reviewed(true);
  AddEvent(&req, kBreakGlassList, "BreakGlassListed", subject, listed.SerializeAsString());
  return req;
}

// ---- Reads ----

absl::StatusOr<ConsentCore::PlannedSubject> ConsentCore::PlanResolve(
    const v1::ResolveSubjectRequest& req, absl::string_view caller) {
  if (caller.empty())
    return absl::PermissionDeniedError("resolving a subject needs the caller's agency identity");
  if (caller != directory::kHubAgency) {
    std::optional<v1::AgencyRecord> a = directory_->Get(caller);
    if (!a.has_value() || !a->active()) {
      return absl::PermissionDeniedError(
          absl::StrCat("agency ", caller, " is not an active agency of this hub"));
    }
  }
  if (req.identifiers().empty() || req.identifiers_size() > kMaxIdentifiers)
    return absl::InvalidArgumentError("give 1 to 8 identifiers of one person");
  std::set<std::string> streams;
  for (const v1::Identifier& id : req.identifiers()) {
    RETURN_IF_ERROR(ValidateIdentifier(id));
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
  AddEvent(&out.creation, SubjectStream(id), "SubjectCreated", id, created.SerializeAsString())
      ->add_agencies(std::string(caller));
  Expect(&out.creation, SubjectStream(id), 0);
  v1::SubjectRef ref;
  ref.set_subject_id(id);
  for (const std::string& stream : streams) {
    AddEvent(&out.creation, stream, "IdentifierClaimed", id, ref.SerializeAsString());
    Expect(&out.creation, stream, 0);
  }
  return out;
}

absl::StatusOr<v1::ResolveSubjectResponse> ConsentCore::Resolve(
    const v1::ResolveSubjectRequest& req, absl::string_view caller) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(PlannedSubject planned, PlanResolve(req, caller));
    v1::ResolveSubjectResponse resp;
    resp.set_subject_id(planned.subject_id);
    if (planned.creation.events().empty()) return resp;
    absl::StatusOr<v1::Commit> commit = ledger_->Append(std::move(planned.creation));
    if (absl::IsFailedPrecondition(commit.status())) continue;  // created meanwhile: resolve again
    RETURN_IF_ERROR(commit.status());
    resp.set_seq(commit->last_seq());
    return resp;
  }
  return absl::AbortedError("the identifiers changed concurrently three times; try again");
}

absl::StatusOr<v1::ConsentRecord> ConsentCore::GetConsent(absl::string_view consent_id,
                                                          absl::string_view caller) {
  ASSIGN_OR_RETURN(std::string subject, LocateConsent(consent_id));
  ASSIGN_OR_RETURN(SubjectState st, Load(subject, /*with_disclosures=*/true));
  auto it = st.consents.find(std::string(consent_id));
  if (it == st.consents.end()) return absl::DataLossError("a located consent is missing");
  if (!MayRead(it->second.record, caller)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "consent ", consent_id,
        " is visible to its recording agency, the agencies holding data under it, and compliance"));
  }
  v1::ConsentRecord r = it->second.record;
  const absl::Time now = clock_->Now();
  if (r.consent().status() == v1::CONSENT_ACTIVE && r.consent().period().end_unix_nanos() != 0 &&
      now >= absl::FromUnixNanos(r.consent().period().end_unix_nanos())) {
    r.mutable_consent()->set_status(v1::CONSENT_EXPIRED);
  }
  return r;
}

absl::StatusOr<v1::ListConsentsResponse> ConsentCore::ListConsents(
    const v1::ListConsentsRequest& req, absl::string_view caller) {
  const bool compliance = IsCompliance(caller);
  absl::StatusOr<SubjectState> st = Load(req.subject_id(), /*with_disclosures=*/true);
  if (absl::IsNotFound(st.status()) && !compliance) {
    // Not an oracle for which people the hub knows.
    return absl::PermissionDeniedError("no consent of this subject is visible to the caller");
  }
  RETURN_IF_ERROR(st.status());
  const absl::Time at =
      req.at_unix_nanos() != 0 ? absl::FromUnixNanos(req.at_unix_nanos()) : clock_->Now();
  v1::ListConsentsResponse resp;
  resp.set_subject_id(st->subjects.survivor);
  for (auto& [id, view] : st->consents) {
    if (!MayRead(view.record, caller)) continue;
    v1::ConsentRecord r = view.record;
    v1::Consent* c = r.mutable_consent();
    if (c->status() == v1::CONSENT_ACTIVE && c->period().end_unix_nanos() != 0 &&
        at >= absl::FromUnixNanos(c->period().end_unix_nanos())) {
      c->set_status(v1::CONSENT_EXPIRED);
    }
    *resp.add_consents() = std::move(r);
  }
  if (resp.consents().empty() && !compliance)
    return absl::PermissionDeniedError("no consent of this subject is visible to the caller");
  return resp;
}

absl::StatusOr<v1::CheckConsentResponse> ConsentCore::Check(const v1::CheckConsentRequest& req,
                                                            absl::string_view caller) {
  RETURN_IF_ERROR(RequireCompliance(caller, "consent decisions"));
  RETURN_IF_ERROR(storage::ValidateAgencyId(req.recipient_agency()));
  if (!KnownPurposes().contains(req.purpose()))
    return absl::InvalidArgumentError(absl::StrCat("unknown purpose '", req.purpose(), "'"));
  if (req.categories().empty() || req.categories_size() > kMaxCategories)
    return absl::InvalidArgumentError("a check names 1 to 32 categories");
  for (const std::string& c : req.categories()) {
    if (!options_.categories.contains(c))
      return absl::InvalidArgumentError(absl::StrCat("unknown data category '", c, "'"));
  }
  if (req.min_seq() > 0)
    RETURN_IF_ERROR(directory_runner_->WaitFor(req.min_seq(), kProjectionWait));
  std::optional<v1::AgencyRecord> recipient = directory_->Get(req.recipient_agency());
  if (!recipient.has_value())
    return absl::NotFoundError(absl::StrCat("no agency ", req.recipient_agency()));
  const absl::Time at =
      req.at_unix_nanos() != 0 ? absl::FromUnixNanos(req.at_unix_nanos()) : clock_->Now();
  ASSIGN_OR_RETURN(SubjectState st, Load(req.subject_id(), /*with_disclosures=*/false));
  std::vector<v1::Consent> consents;
  consents.reserve(st.consents.size());
  for (const auto& [id, view] : st.consents) consents.push_back(view.record.consent());
  std::vector<std::string> categories(req.categories().begin(), req.categories().end());
  std::vector<CategoryDecision> decided =
      Decide(consents, Recipient{recipient->agency_id(), recipient->profile().kind()},
             req.purpose(), categories, at);
  v1::CheckConsentResponse resp;
  resp.set_subject_id(st.subjects.survivor);
  resp.set_recipient_agency(req.recipient_agency());
  resp.set_purpose(req.purpose());
  resp.set_at_unix_nanos(absl::ToUnixNanos(at));
  for (CategoryDecision& d : decided) {
    v1::CategoryDecision* out = resp.add_decisions();
    out->set_category(d.category);
    if (!recipient->active()) {
      out->set_reason(absl::StrCat("agency ", recipient->agency_id(), " is suspended"));
      continue;
    }
    out->set_permit(d.permit);
    for (std::string& id : d.consent_ids) out->add_consent_ids(std::move(id));
    out->set_reason(std::move(d.reason));
    if (d.permit) continue;
    // A medical emergency: a break-glass by the recipient for this category
    // and purpose, in force at `at`, overrides the deny.
    for (const v1::BreakGlassRecord& bg : st.break_glass) {
      if (bg.agency_id() != recipient->agency_id() || bg.purpose() != req.purpose() ||
          !Contains(bg.categories(), d.category) ||
          at < absl::FromUnixNanos(bg.from_unix_nanos()) ||
          at >= absl::FromUnixNanos(bg.until_unix_nanos())) {
        continue;
      }
      out->set_permit(true);
      out->set_break_glass_id(bg.break_glass_id());
      out->set_reason(absl::StrCat(d.category, " to ", recipient->agency_id(),
                                   " is permitted by break-glass ", bg.break_glass_id(),
                                   " (medical emergency, until ",
                                   absl::FormatTime(absl::FromUnixNanos(bg.until_unix_nanos())),
                                   "), overriding: ", out->reason()));
      break;
    }
  }
  v1::StreamVersion* sv = resp.add_read_versions();
  sv->set_stream(SubjectStream(st.subjects.survivor));
  sv->set_version(st.subjects.survivor_version);
  for (v1::StreamVersion& c : st.consent_versions) *resp.add_read_versions() = std::move(c);
  sv = resp.add_read_versions();
  sv->set_stream(absl::StrCat("agency/", recipient->agency_id()));
  sv->set_version(recipient->version());
  return resp;
}

absl::StatusOr<v1::DisclosureReportResponse> ConsentCore::Report(
    const v1::DisclosureReportRequest& req, absl::string_view caller) {
  RETURN_IF_ERROR(RequireCompliance(caller, "disclosure reports"));
  const absl::Time to =
      req.to_unix_nanos() != 0 ? absl::FromUnixNanos(req.to_unix_nanos()) : clock_->Now();
  const absl::Time from =
      req.from_unix_nanos() != 0 ? absl::FromUnixNanos(req.from_unix_nanos()) : SixYearsBefore(to);
  if (from > to) return absl::InvalidArgumentError("the report's period ends before it starts");
  ASSIGN_OR_RETURN(SubjectState st, Load(req.subject_id(), /*with_disclosures=*/true));
  v1::DisclosureReportResponse resp;
  resp.set_subject_id(st.subjects.survivor);
  for (const std::string& m : st.subjects.members) resp.add_subject_ids(m);
  resp.set_from_unix_nanos(absl::ToUnixNanos(from));
  resp.set_to_unix_nanos(absl::ToUnixNanos(to));
  resp.set_hipaa_accounting(req.hipaa_accounting());
  std::map<std::pair<std::string, std::string>, int> summary;  // (recipient, purpose) -> entry
  for (const auto& [seq, d] : st.disclosures) {
    const absl::Time t = absl::FromUnixNanos(d.disclosed_unix_nanos());
    if (t < from || t > to) continue;
    if (req.hipaa_accounting() && IsExcludedFromAccounting(d, st)) continue;
    if (req.summarize()) {
      auto [it, fresh] =
          summary.try_emplace({d.recipient_agency(), d.purpose()}, resp.entries_size());
      if (!fresh) {
        v1::DisclosureEntry* e = resp.mutable_entries(it->second);
        e->set_count(e->count() + 1);
        e->set_last_unix_nanos(d.disclosed_unix_nanos());
        continue;
      }
    }
    v1::DisclosureEntry* e = resp.add_entries();
    e->set_seq(seq);
    e->set_disclosed_unix_nanos(d.disclosed_unix_nanos());
    e->set_recipient_agency(d.recipient_agency());
    if (std::optional<v1::AgencyRecord> a = directory_->Get(d.recipient_agency())) {
      e->set_recipient_name(a->profile().display_name());
      *e->mutable_recipient_address() = a->profile().address();
      if (a->profile().address().confidential()) {
        // A confidential address (a shelter) is not printed on a report.
        e->mutable_recipient_address()->Clear();
        e->mutable_recipient_address()->set_confidential(true);
      }
    }
    *e->mutable_categories() = d.categories();
    e->set_record_type(d.record_type());
    e->set_purpose(d.purpose());
    *e->mutable_consent_ids() = d.consent_ids();
    e->set_break_glass_id(d.break_glass_id());
    e->set_authority(
        d.authority() == "consent" ? absl::StrCat("consent ", absl::StrJoin(d.consent_ids(), ", "))
        : d.authority() == "break-glass" ? absl::StrCat("break-glass ", d.break_glass_id())
                                         : d.authority());
    e->set_subject_id(d.subject_id());
    e->set_count(1);
    e->set_last_unix_nanos(d.disclosed_unix_nanos());
  }
  return resp;
}

bool ConsentCore::IsExcludedFromAccounting(const v1::DisclosureRecorded& d,
                                           const SubjectState& st) const {
  // 45 CFR §164.528(a)(1)(i): treatment, payment and health care operations.
  if (TreatmentPaymentOperations().contains(d.purpose())) return true;
  // (ii) to the individual.
  if (d.purpose() == "subject-request") return true;
  // (iv) pursuant to an authorization under §164.508.
  for (const std::string& id : d.consent_ids()) {
    auto it = st.consents.find(id);
    if (it != st.consents.end() && it->second.record.consent().hipaa_authorization()) return true;
  }
  return false;
}

absl::StatusOr<v1::ListBreakGlassResponse> ConsentCore::ListBreakGlass(
    const v1::ListBreakGlassRequest& req, absl::string_view caller) {
  RETURN_IF_ERROR(RequireCompliance(caller, "the break-glass review list"));
  ASSIGN_OR_RETURN(std::vector<v1::Event> listed,
                   storage::ReadWholeStream(ledger_, kBreakGlassList));
  std::map<std::string, bool> reviewed;
  std::vector<std::string> order;
  for (const v1::Event& e : listed) {
    ASSIGN_OR_RETURN(v1::BreakGlassListed l, HubPayload<v1::BreakGlassListed>(e));
    if (!reviewed.contains(l.break_glass_id())) order.push_back(l.break_glass_id());
    reviewed[l.break_glass_id()] |= l.reviewed();
  }
  v1::ListBreakGlassResponse resp;
  for (const std::string& id : order) {
    if (reviewed[id] && !req.include_reviewed()) continue;
    ASSIGN_OR_RETURN(std::vector<v1::Event> events,
                     storage::ReadWholeStream(ledger_, absl::StrCat("breakglass/", id)));
    if (events.empty()) return absl::DataLossError(absl::StrCat("break-glass ", id, " is missing"));
    v1::Envelope env;
    ASSIGN_OR_RETURN(v1::BreakGlass bg, SignedPayload<v1::BreakGlass>(events.front(), &env));
    v1::BreakGlassRecord* r = resp.add_records();
    r->set_break_glass_id(id);
    r->set_subject_id(events.front().header().subject());
    r->set_agency_id(env.sender_agency());
    r->set_user_id(env.actor().user_id());
    *r->mutable_categories() = bg.categories();
    r->set_purpose(bg.purpose());
    r->set_reason(bg.reason());
    const int64_t from = events.front().header().commit_time_unix_nanos();
    r->set_from_unix_nanos(from);
    r->set_seq(events.front().header().seq());
    if (events.size() > 1) {
      v1::Envelope review_env;
      ASSIGN_OR_RETURN(v1::ReviewBreakGlass review,
                       SignedPayload<v1::ReviewBreakGlass>(events[1], &review_env));
      r->set_reviewed(true);
      r->set_appropriate(review.appropriate());
      r->set_reviewed_by_agency(review_env.sender_agency());
      r->set_reviewed_by_user(review_env.actor().user_id());
    }
  }
  // The window comes from the invocation record in the consent stream.
  for (v1::BreakGlassRecord& r : *resp.mutable_records()) {
    ASSIGN_OR_RETURN(SubjectState st, Load(r.subject_id(), false));
    for (const v1::BreakGlassRecord& b : st.break_glass) {
      if (b.break_glass_id() != r.break_glass_id()) continue;
      r.set_from_unix_nanos(b.from_unix_nanos());
      r.set_until_unix_nanos(b.until_unix_nanos());
    }
  }
  return resp;
}

}  // namespace careloop::consent
