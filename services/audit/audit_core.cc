#include "services/audit/audit_core.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/status.h"
#include "services/audit/bundle.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "services/trust/envelope.h"
#include "storage/validate.h"

namespace careloop::audit {

namespace {

constexpr uint32_t kDefaultLimit = 100;
constexpr uint32_t kMaxLimit = 1000;

// The consent trail's event types.
const std::set<std::string>& TrailTypes() {
  static const auto* t = new std::set<std::string>{
      names::event::kGrantConsent,       names::event::kAmendConsent,
      names::event::kRevokeConsent,      names::event::kConsentRevocationNotice,
      names::event::kBreakGlass,         names::event::kReviewBreakGlass,
      names::event::kDisclosureRecorded, names::event::kDeliveryWithheld,
      names::event::kMergeSubjects,      names::event::kLinkIdentifier,
      names::event::kRecordAccessed};
  return *t;
}

void Strip(v1::Event* e) { e->clear_payload(); }

// The signed envelope an event carries, if it carries one.
std::optional<v1::Envelope> EnvelopeOf(const v1::Event& e) {
  if (!CarriesEnvelope(e.header().type())) return std::nullopt;
  v1::Envelope env;
  if (!env.ParseFromString(e.payload())) return std::nullopt;
  return env;
}

}  // namespace

AuditCore::AuditCore(storage::Ledger* ledger, directory::Agencies* directory,
                     consent::SubjectRecords* consent, Clock* clock, AuditOptions options)
    : ledger_(ledger),
      directory_(directory),
      consent_(consent),
      clock_(clock),
      options_(std::move(options)),
      gate_(&policy::AuditTable(), directory, /*tls=*/false),
      figures_(ledger) {}

absl::StatusOr<std::string> AuditCore::Admit(const policy::Caller& caller,
                                             absl::string_view method) const {
  RETURN_IF_ERROR(gate_.Admit(caller, method));
  return caller.CoreId();
}

absl::Status AuditCore::Record(const policy::Caller& who, absl::string_view rpc,
                               const google::protobuf::Message& request, absl::string_view subject,
                               absl::string_view record_type) {
  if (subject.empty())
    return ledger_->Append(trust::ReadRecord(who.CoreId(), who.actor, rpc, request)).status();
  v1::RecordAccessed read;
  read.set_agency(who.CoreId());
  read.set_actor(who.actor);
  read.set_rpc(absl::StrCat("AuditService.", rpc));
  read.set_record_type(std::string(record_type));
  read.set_subject_id(std::string(subject));
  return ledger_->Append(trust::AccessRecord(read)).status();
}

absl::StatusOr<std::vector<v1::Event>> AuditCore::SubjectEvents(absl::string_view subject_id,
                                                                uint64_t after, bool payloads,
                                                                size_t max, bool* more) {
  ASSIGN_OR_RETURN(consent::SubjectSet set, consent_->Subjects(subject_id));
  // Merge the members' index pages; only events up to the smallest "page
  // end" of a member with more are certainly complete in seq order.
  std::vector<v1::Event> all;
  uint64_t complete_to = UINT64_MAX;
  *more = false;
  for (const std::string& member : set.members) {
    v1::ReadIndexRequest r;
    r.set_subject(member);
    r.set_after_seq(after);
    r.set_limit(static_cast<uint32_t>(std::min<size_t>(max, kMaxLimit)));
    r.set_include_payloads(payloads);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
    if (page.more() && !page.events().empty()) {
      complete_to = std::min(complete_to, page.events().rbegin()->header().seq());
      *more = true;
    }
    for (auto& e : *page.mutable_events()) all.push_back(std::move(e));
  }
  std::sort(all.begin(), all.end(), [](const v1::Event& a, const v1::Event& b) {
    return a.header().seq() < b.header().seq();
  });
  std::vector<v1::Event> out;
  for (auto& e : all) {
    if (e.header().seq() > complete_to) break;
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<uint64_t> AuditCore::FirstSeqAt(int64_t unix_nanos) {
  ASSIGN_OR_RETURN(v1::SignedHead head, ledger_->Head(0));
  uint64_t lo = 1, hi = head.tree_size() + 1;  // answer in [lo, hi]
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    v1::ReadRequest r;
    r.set_from_seq(mid);
    r.set_limit(1);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->Read(r));
    if (page.events().empty()) {
      hi = mid;
      continue;
    }
    if (page.events(0).header().commit_time_unix_nanos() >= unix_nanos) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

absl::StatusOr<v1::AuditQueryResponse> AuditCore::Query(const v1::AuditQueryRequest& req,
                                                        const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Query"));
  ASSIGN_OR_RETURN(v1::AuditQueryResponse resp, Select(req));
  RETURN_IF_ERROR(Record(who, "Query", req, req.subject_id(), "events"));
  return resp;
}

namespace {

// One selector at most, and something to select by.
absl::Status ValidateQuery(const v1::AuditQueryRequest& req, int selectors) {
  if (selectors > 1) {
    return absl::InvalidArgumentError(
        "name at most one of subject_id, agency, referral, consent_id (filter the rest)");
  }
  if (selectors == 0 && req.from_unix_nanos() == 0 && req.to_unix_nanos() == 0) {
    return absl::InvalidArgumentError(
        "name a subject, an agency, a referral, a consent, or a time range");
  }
  if (req.limit() > kMaxLimit)
    return absl::InvalidArgumentError(absl::StrCat("limit is at most ", kMaxLimit));
  if (!req.agency().empty()) RETURN_IF_ERROR(storage::ValidateAgencyId(req.agency()));
  return absl::OkStatus();
}

// Whether the event is about the consent `consent_id` (its grant, change,
// revocation notice, or a disclosure that relied on it).
bool NamesConsent(const v1::Event& e, const std::string& consent_id) {
  const std::string& t = e.header().type();
  std::optional<v1::Envelope> env = EnvelopeOf(e);
  if (t == names::event::kGrantConsent && env) {
    return consent::ConsentIdFor(env->sender_agency(), env->message_id()) == consent_id;
  }
  if ((t == names::event::kAmendConsent || t == names::event::kRevokeConsent) && env) {
    v1::RevokeConsent r;  // consent_id is field 1 in both
    r.ParseFromString(env->payload());
    return r.consent_id() == consent_id;
  }
  if (t == names::event::kConsentRevocationNotice) {
    v1::ConsentRevocationNotice n;
    n.ParseFromString(e.payload());
    return n.consent_id() == consent_id;
  }
  if (t == names::event::kDisclosureRecorded) {
    v1::DisclosureRecorded d;
    d.ParseFromString(e.payload());
    return std::find(d.consent_ids().begin(), d.consent_ids().end(), consent_id) !=
           d.consent_ids().end();
  }
  return false;
}

// The query's filters, for one candidate event (`to`: the range's end).
bool Matches(const v1::AuditQueryRequest& req, int64_t to, const v1::Event& e) {
  const auto& h = e.header();
  if (h.commit_time_unix_nanos() < req.from_unix_nanos() || h.commit_time_unix_nanos() >= to)
    return false;
  if (!req.event_type().empty() && h.type() != req.event_type()) return false;
  if (!req.actor().empty()) {
    std::optional<v1::Envelope> env = EnvelopeOf(e);
    if (!env || env->actor().user_id() != req.actor()) return false;
  }
  if (!req.consent_id().empty()) return NamesConsent(e, req.consent_id());
  return true;
}

}  // namespace

absl::StatusOr<v1::AuditQueryResponse> AuditCore::Select(const v1::AuditQueryRequest& req) {
  const int selectors = !req.subject_id().empty() + !req.agency().empty() +
                        !req.referral().empty() + !req.consent_id().empty();
  RETURN_IF_ERROR(ValidateQuery(req, selectors));
  const uint32_t limit = req.limit() == 0 ? kDefaultLimit : req.limit();
  Source src;
  src.to = req.to_unix_nanos() == 0 ? INT64_MAX : req.to_unix_nanos();
  src.payloads = req.include_payloads() || !req.actor().empty() || !req.consent_id().empty();
  v1::AuditQueryResponse resp;
  uint64_t after = req.after_seq();
  if (selectors == 0 && req.from_unix_nanos() > 0) {
    ASSIGN_OR_RETURN(uint64_t first, FirstSeqAt(req.from_unix_nanos()));
    after = std::max<uint64_t>(after, first - 1);
  }
  // Candidate pages from the narrowest source, filtered, until the page is full.
  if (!req.consent_id().empty()) {
    // consent-id/<id> locates the subject the consent is about.
    ASSIGN_OR_RETURN(std::vector<v1::Event> loc,
                     storage::ReadWholeStream(ledger_, names::stream::ConsentId(req.consent_id())));
    if (loc.empty()) return absl::NotFoundError(absl::StrCat("no consent ", req.consent_id()));
    src.subject = loc.front().header().subject();
  } else {
    src.subject = req.subject_id();
  }
  if (!req.referral().empty()) {
    ASSIGN_OR_RETURN(src.referral_events, ReferralEvents(req.referral(), src.payloads));
  }
  bool exhausted = false;
  while (resp.events_size() < static_cast<int>(limit) && !exhausted) {
    bool more = false;
    ASSIGN_OR_RETURN(std::vector<v1::Event> page, NextPage(req, src, after, &more));
    if (page.empty()) {
      exhausted = true;
      break;
    }
    for (v1::Event& e : page) {
      after = e.header().seq();
      if (!Matches(req, src.to, e)) continue;
      if (!req.include_payloads()) Strip(&e);
      *resp.add_events() = std::move(e);
      if (resp.events_size() >= static_cast<int>(limit)) break;
    }
    if (!more && after >= page.back().header().seq()) exhausted = true;
  }
  if (!exhausted) resp.set_next_after_seq(after);
  return resp;
}

absl::StatusOr<std::vector<v1::Event>> AuditCore::ReferralEvents(absl::string_view referral,
                                                                 bool payloads) {
  std::vector<v1::Event> out;
  for (const char* prefix : {names::stream::kReferralPrefix, names::stream::kThreadPrefix}) {
    ASSIGN_OR_RETURN(std::vector<v1::Event> s,
                     storage::ReadWholeStream(ledger_, absl::StrCat(prefix, referral), payloads));
    for (auto& e : s) out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const v1::Event& a, const v1::Event& b) {
    return a.header().seq() < b.header().seq();
  });
  return out;
}

absl::StatusOr<std::vector<v1::Event>> AuditCore::NextPage(const v1::AuditQueryRequest& req,
                                                           const Source& src, uint64_t after,
                                                           bool* more) {
  std::vector<v1::Event> page;
  if (!src.subject.empty()) {
    return SubjectEvents(src.subject, after, src.payloads, kMaxLimit, more);
  }
  if (!req.agency().empty()) {
    v1::ReadIndexRequest r;
    r.set_agency(req.agency());
    r.set_after_seq(after);
    r.set_limit(kMaxLimit);
    r.set_include_payloads(src.payloads);
    ASSIGN_OR_RETURN(v1::ReadResponse p, ledger_->ReadIndex(r));
    *more = p.more();
    page.assign(p.events().begin(), p.events().end());
    return page;
  }
  if (!req.referral().empty()) {
    for (const auto& e : src.referral_events)
      if (e.header().seq() > after) page.push_back(e);
    return page;
  }
  v1::ReadRequest r;
  r.set_from_seq(after + 1);
  r.set_limit(kMaxLimit);
  r.set_include_payloads(src.payloads);
  ASSIGN_OR_RETURN(v1::ReadResponse p, ledger_->Read(r));
  page.assign(p.events().begin(), p.events().end());
  *more = !page.empty();
  // Events are in commit order: past the range's end, stop.
  if (!page.empty() && page.back().header().commit_time_unix_nanos() >= src.to) *more = false;
  return page;
}

absl::StatusOr<v1::TrailResponse> AuditCore::Trail(const v1::TrailRequest& req,
                                                   const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Trail"));
  ASSIGN_OR_RETURN(consent::SubjectSet set, consent_->Subjects(req.subject_id()));
  v1::TrailResponse resp;
  resp.set_subject_id(set.survivor);
  for (size_t i = 1; i < set.members.size(); ++i) resp.add_merged(set.members[i]);
  uint64_t after = 0;
  while (true) {
    bool more = false;
    ASSIGN_OR_RETURN(std::vector<v1::Event> page,
                     SubjectEvents(set.survivor, after, /*payloads=*/true, kMaxLimit, &more));
    for (const v1::Event& e : page) {
      after = e.header().seq();
      const std::string& type = e.header().type();
      if (!TrailTypes().contains(type)) continue;
      v1::TrailEntry t;
      t.set_seq(e.header().seq());
      t.set_at_unix_nanos(e.header().commit_time_unix_nanos());
      t.set_type(type);
      std::optional<v1::Envelope> env = EnvelopeOf(e);
      if (env) {
        t.set_by_agency(env->sender_agency());
        t.set_by_user(env->actor().user_id());
      }
      if (type == names::event::kGrantConsent && env) {
        t.set_consent_id(consent::ConsentIdFor(env->sender_agency(), env->message_id()));
        v1::GrantConsent g;
        g.ParseFromString(env->payload());
        for (const auto& c : g.consent().provision().categories()) t.add_categories(c);
        for (const auto& p : g.consent().provision().purposes()) t.set_purpose(p);
        t.set_summary(absl::StrCat("consent ", t.consent_id(), " granted, recorded by ",
                                   env->sender_agency()));
      } else if ((type == names::event::kAmendConsent || type == names::event::kRevokeConsent) &&
                 env) {
        v1::RevokeConsent r;
        r.ParseFromString(env->payload());
        v1::AmendConsent a;
        a.ParseFromString(env->payload());
        t.set_consent_id(r.consent_id());
        t.set_reason(type == names::event::kRevokeConsent ? r.reason() : a.reason());
        t.set_summary(
            absl::StrCat("consent ", r.consent_id(),
                         type == names::event::kRevokeConsent ? " revoked by " : " amended by ",
                         env->sender_agency()));
      } else if (type == names::event::kConsentRevocationNotice) {
        v1::ConsentRevocationNotice n;
        n.ParseFromString(e.payload());
        t.set_consent_id(n.consent_id());
        t.set_recipient_agency(n.recipient_agency());
        t.set_summary(absl::StrCat(n.recipient_agency(), " told that consent ", n.consent_id(),
                                   " was revoked"));
      } else if (type == names::event::kBreakGlass && env) {
        v1::BreakGlass b;
        b.ParseFromString(env->payload());
        t.set_break_glass_id(consent::BreakGlassIdFor(env->sender_agency(), env->message_id()));
        t.mutable_categories()->CopyFrom(b.categories());
        t.set_purpose(b.purpose());
        t.set_reason(b.reason());
        t.set_summary(
            absl::StrCat("break-glass by ", env->sender_agency(), "/", env->actor().user_id()));
      } else if (type == names::event::kReviewBreakGlass && env) {
        v1::ReviewBreakGlass r;
        r.ParseFromString(env->payload());
        t.set_break_glass_id(r.break_glass_id());
        t.set_reason(r.notes());
        t.set_summary(absl::StrCat("break-glass ", r.break_glass_id(), " reviewed: ",
                                   r.appropriate() ? "appropriate" : "NOT appropriate"));
      } else if (type == names::event::kDisclosureRecorded) {
        v1::DisclosureRecorded d;
        d.ParseFromString(e.payload());
        t.set_by_agency(d.disclosing_agency());
        t.set_recipient_agency(d.recipient_agency());
        t.mutable_categories()->CopyFrom(d.categories());
        t.set_purpose(d.purpose());
        t.set_consent_id(absl::StrJoin(d.consent_ids(), ","));
        t.set_break_glass_id(d.break_glass_id());
        t.set_summary(absl::StrCat(absl::StrJoin(d.categories(), ", "), " disclosed to ",
                                   d.recipient_agency(), " (", d.record_type(), " ", d.record_id(),
                                   ") under ", d.authority()));
      } else if (type == names::event::kDeliveryWithheld) {
        t.set_recipient_agency(e.header().stream().substr(9));  // delivery/<agency>
        t.set_summary("content withheld at delivery: consent no longer permitted it");
      } else if (type == names::event::kRecordAccessed) {
        v1::RecordAccessed r;
        if (!r.ParseFromString(e.payload())) return trust::Corrupt(e, "is not a RecordAccessed");
        t.set_by_agency(r.agency());
        t.set_by_user(r.actor());
        t.set_record(
            absl::StrCat(r.record_type(), r.record_id().empty() ? "" : " ", r.record_id()));
        std::set<std::string> categories, consents;
        for (const v1::AccessedSection& a : r.sections()) {
          t.add_sections(a.section_id());
          categories.insert(a.category());
          consents.insert(a.consent_ids().begin(), a.consent_ids().end());
          if (!a.break_glass_id().empty()) t.set_break_glass_id(a.break_glass_id());
        }
        for (const std::string& c : categories) t.add_categories(c);
        t.set_consent_id(absl::StrJoin(consents, ","));
        t.set_summary(absl::StrCat(t.record(), " opened by ", r.agency(),
                                   r.actor().empty() ? "" : "/", r.actor()));
      } else if (type == names::event::kMergeSubjects || type == names::event::kLinkIdentifier) {
        t.set_summary(type == names::event::kMergeSubjects ? "subjects merged"
                                                           : "identifier linked");
      }
      *resp.add_entries() = std::move(t);
    }
    if (!more) break;
  }
  RETURN_IF_ERROR(Record(who, "Trail", req, set.survivor, "trail"));
  return resp;
}

absl::StatusOr<v1::DisclosureReportResponse> AuditCore::Report(
    const v1::DisclosureReportRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Report"));
  // Recorded once, here, as this service's read (the consent core records
  // only reads it answers itself).
  ASSIGN_OR_RETURN(v1::DisclosureReportResponse r, consent_->Accounting(req));
  RETURN_IF_ERROR(Record(who, "Report", req, r.subject_id(), "disclosure-report"));
  return r;
}

absl::StatusOr<v1::FiguresResponse> AuditCore::Figures(const v1::FiguresRequest& req,
                                                       const policy::Caller& who) {
  RETURN_IF_ERROR(gate_.Admit(who, "Figures"));
  // Aggregates without a person in them: not a read of anyone's records.
  const std::string scope = who.is_agency() ? who.id : "";
  return figures_.Compute(req, scope, absl::ToUnixNanos(clock_->Now()));
}

absl::StatusOr<v1::SignedHead> AuditCore::Head(const v1::AuditHeadRequest& req,
                                               const policy::Caller& who) {
  RETURN_IF_ERROR(gate_.Admit(who, "Head"));
  return ledger_->Head(req.tree_size());
}

absl::StatusOr<v1::AuditConsistencyResponse> AuditCore::Consistency(
    const v1::AuditConsistencyRequest& req, const policy::Caller& who) {
  RETURN_IF_ERROR(gate_.Admit(who, "Consistency"));
  v1::AuditConsistencyResponse resp;
  ASSIGN_OR_RETURN(*resp.mutable_head2(), ledger_->Head(req.size2()));
  // A head is stored per commit round: size1 may have none (the caller then
  // holds its root from elsewhere, as a monitor does).
  absl::StatusOr<v1::SignedHead> head1 = ledger_->Head(req.size1());
  if (head1.ok()) {
    *resp.mutable_head1() = *std::move(head1);
  } else if (!absl::IsNotFound(head1.status()) && !absl::IsOutOfRange(head1.status())) {
    return head1.status();
  }
  ASSIGN_OR_RETURN(*resp.mutable_proof(),
                   ledger_->ProveConsistency(req.size1(), resp.head2().tree_size()));
  return resp;
}

absl::StatusOr<v1::Receipt> AuditCore::Inclusion(const v1::AuditInclusionRequest& req,
                                                 const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Inclusion"));
  v1::ReadRequest r;
  r.set_from_seq(req.seq());
  r.set_limit(1);
  ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->Read(r));
  const bool own = !page.events().empty() && page.events(0).header().seq() == req.seq() &&
                   std::find(page.events(0).header().agencies().begin(),
                             page.events(0).header().agencies().end(),
                             caller) != page.events(0).header().agencies().end();
  if (!own && !consent_->IsCompliance(caller)) {
    // Also for a seq that does not exist: no oracle.
    return absl::PermissionDeniedError(
        absl::StrCat("inclusion proofs are for an agency's own events (and for compliance); seq ",
                     req.seq(), " is not an event of ", caller));
  }
  if (page.events().empty() || page.events(0).header().seq() != req.seq())
    return absl::NotFoundError(absl::StrCat("no event ", req.seq()));
  v1::Receipt receipt;
  receipt.set_header_bytes(page.events(0).header_bytes());
  ASSIGN_OR_RETURN(*receipt.mutable_head(), ledger_->Head(req.tree_size()));
  ASSIGN_OR_RETURN(*receipt.mutable_proof(),
                   ledger_->ProveInclusion(req.seq(), receipt.head().tree_size()));
  return receipt;
}

absl::StatusOr<v1::ExportResponse> AuditCore::Export(const v1::ExportRequest& req,
                                                     const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Export"));
  const int selectors = !req.subject_id().empty() + !req.referral().empty() +
                        (req.from_unix_nanos() != 0 || req.to_unix_nanos() != 0);
  if (selectors != 1) {
    return absl::InvalidArgumentError("export one subject, one referral, or one period");
  }
  // Which events: the same selection a Query makes, all pages.
  v1::AuditQueryRequest q;
  q.set_subject_id(req.subject_id());
  q.set_referral(req.referral());
  q.set_from_unix_nanos(req.from_unix_nanos());
  q.set_to_unix_nanos(req.to_unix_nanos());
  q.set_limit(kMaxLimit);
  std::vector<uint64_t> seqs;
  while (true) {
    ASSIGN_OR_RETURN(v1::AuditQueryResponse page, Select(q));
    for (const auto& e : page.events()) seqs.push_back(e.header().seq());
    if (seqs.size() > options_.max_export_events) {
      return absl::ResourceExhaustedError(absl::StrCat("more than ", options_.max_export_events,
                                                       " events; export a shorter period"));
    }
    if (page.next_after_seq() == 0) break;
    q.set_after_seq(page.next_after_seq());
  }
  // The export is itself an event: the log vouches for the list of seqs.
  v1::AuditExport record;
  record.set_requested_by(std::string(caller));
  record.set_query(!req.subject_id().empty() ? absl::StrCat("subject ", req.subject_id())
                   : !req.referral().empty()
                       ? absl::StrCat("referral ", req.referral())
                       : absl::StrCat("period ", req.from_unix_nanos(), "..", req.to_unix_nanos()));
  for (uint64_t s : seqs) record.add_seqs(s);
  v1::AppendRequest append;
  v1::EventInput* ev = trust::AddEvent(&append, names::stream::Audit(caller),
                                       names::event::kAuditExport, {}, record.SerializeAsString());
  if (!req.subject_id().empty()) ev->set_subject(req.subject_id());
  ASSIGN_OR_RETURN(v1::Commit commit, ledger_->Append(std::move(append)));
  const v1::SignedHead& head = commit.head();

  v1::ExportResponse out;
  *out.add_lines()->mutable_head() = head;
  auto add_event = [&](uint64_t seq, bool is_export) -> absl::Status {
    v1::ReadRequest r;
    r.set_from_seq(seq);
    r.set_limit(1);
    r.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->Read(r));
    if (page.events().empty()) return absl::InternalError(absl::StrCat("seq ", seq, " vanished"));
    v1::BundleLine* line = out.add_lines();
    v1::BundleEvent* b = is_export ? line->mutable_export_() : line->mutable_event();
    b->set_header_bytes(page.events(0).header_bytes());
    if (req.include_payloads() || is_export) {
      b->set_payload(page.events(0).payload());
      b->set_payload_withheld(page.events(0).payload_redacted());
    } else {
      b->set_payload_withheld(true);
    }
    ASSIGN_OR_RETURN(v1::InclusionProof proof, ledger_->ProveInclusion(seq, head.tree_size()));
    for (const auto& h : proof.hashes()) b->add_proof(h);
    return absl::OkStatus();
  };
  for (uint64_t s : seqs) RETURN_IF_ERROR(add_event(s, false));
  RETURN_IF_ERROR(add_event(commit.first_seq(), true));
  // The keys that check every envelope inside, with their validity.
  const directory::HubAdmin& admin = directory_->admin();
  v1::BundleKey* hub = out.add_lines()->mutable_key();
  hub->set_agency_id(directory::kHubAgency);
  hub->set_key_id(admin.key_id);
  hub->set_public_key(admin.public_key);
  for (const v1::AgencyRecord& a : directory_->All()) {
    for (const v1::AgencyKey& k : a.keys()) {
      v1::BundleKey* bk = out.add_lines()->mutable_key();
      bk->set_agency_id(a.agency_id());
      bk->set_key_id(k.key_id());
      bk->set_public_key(k.public_key());
      bk->set_not_before_unix_nanos(k.not_before_unix_nanos());
      bk->set_not_after_unix_nanos(k.not_after_unix_nanos());
      bk->set_revoked_unix_nanos(k.revoked_unix_nanos());
    }
  }
  log::Info("audit.export", {{"agency", std::string(caller)},
                             {"events", static_cast<uint64_t>(seqs.size())},
                             {"export_seq", commit.first_seq()}});
  return out;
}

std::string AuditCore::FhirAuditEvent(const v1::DisclosureRecorded& d, uint64_t seq,
                                      int64_t recorded_unix_nanos, absl::string_view hub_name) {
  using nlohmann::json;
  const auto [purpose_code, purpose_display] = consent::PurposeOfUseCode(d.purpose());
  auto who = [](const std::string& id) {
    return json{{"identifier", {{"system", "urn:careloop:agency"}, {"value", id}}},
                {"display", id}};
  };
  json security = json::array();
  for (const auto& c : d.categories())
    security.push_back({{"system", "urn:careloop:data-category"}, {"code", c}});
  json e = {
      {"resourceType", "AuditEvent"},
      {"id", absl::StrCat("careloop-", seq)},
      {"type",
       {{"system", "http://dicom.nema.org/resources/ontology/DCM"},
        {"code", "110106"},
        {"display", "Export"}}},
      {"subtype",
       json::array({{{"system", "urn:careloop:audit-subtype"},
                     {"code", "disclosure"},
                     {"display", "Disclosure of health information to another organization"}}})},
      {"action", "R"},
      {"recorded", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                    absl::FromUnixNanos(recorded_unix_nanos), absl::UTCTimeZone())},
      {"outcome", "0"},
      {"purposeOfEvent",
       json::array(
           {{{"coding",
              json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActReason"},
                            {"code", purpose_code},
                            {"display", purpose_display}}})},
             {"text", d.purpose()}}})},
      {"agent",
       json::array(
           {{{"type",
              {{"coding", json::array({{{"system", "http://dicom.nema.org/resources/ontology/DCM"},
                                        {"code", "110153"},
                                        {"display", "Source Role ID"}}})}}},
             {"who", who(d.disclosing_agency())},
             {"requestor", false}},
            {{"type",
              {{"coding", json::array({{{"system", "http://dicom.nema.org/resources/ontology/DCM"},
                                        {"code", "110152"},
                                        {"display", "Destination Role ID"}}})}}},
             {"who", who(d.recipient_agency())},
             {"requestor", true}}})},
      {"source",
       {{"site", std::string(hub_name)},
        {"observer", {{"display", absl::StrCat("careloop hub ", hub_name)}}},
        {"type",
         json::array({{{"system", "http://terminology.hl7.org/CodeSystem/security-source-type"},
                       {"code", "4"},
                       {"display", "Application Server"}}})}}},
      {"entity",
       json::array(
           {{{"what",
              {{"identifier", {{"system", "urn:careloop:subject"}, {"value", d.subject_id()}}}}},
             {"type",
              {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"},
               {"code", "1"},
               {"display", "Person"}}},
             {"role",
              {{"system", "http://terminology.hl7.org/CodeSystem/object-role"},
               {"code", "1"},
               {"display", "Patient"}}}},
            {{"what",
              {{"identifier",
                {{"system", absl::StrCat("urn:careloop:", d.record_type())},
                 {"value", d.record_id()}}}}},
             {"type",
              {{"system", "http://terminology.hl7.org/CodeSystem/audit-entity-type"},
               {"code", "2"},
               {"display", "System Object"}}},
             {"description",
              absl::StrCat(d.record_type(), " sections: ", absl::StrJoin(d.categories(), ", "))},
             {"securityLabel", security},
             {"detail",
              json::array(
                  {{{"type", "authority"}, {"valueString", d.authority()}},
                   {{"type", "consent"}, {"valueString", absl::StrJoin(d.consent_ids(), ",")}},
                   {{"type", "ledger-seq"}, {"valueString", absl::StrCat(seq)}}})}}})},
  };
  if (!d.disclosing_actor().empty()) {
    // The person whose signed change disclosed it: a staff member of the
    // disclosing agency, by directory user id (never a name).
    e["agent"].push_back(
        {{"type",
          {{"coding",
            json::array(
                {{{"system", "http://terminology.hl7.org/CodeSystem/extra-security-role-type"},
                  {"code", "humanuser"},
                  {"display", "human user"}}})}}},
         {"who",
          {{"identifier",
            {{"system", absl::StrCat("urn:careloop:user:", d.disclosing_agency())},
             {"value", d.disclosing_actor()}}}}},
         {"requestor", true}});
  }
  return e.dump();
}

absl::StatusOr<v1::FhirAuditEventsResponse> AuditCore::FhirAuditEvents(
    const v1::FhirAuditEventsRequest& req, const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "FhirAuditEvents"));
  ASSIGN_OR_RETURN(consent::SubjectSet set, consent_->Subjects(req.subject_id()));
  const int64_t to = req.to_unix_nanos() == 0 ? INT64_MAX : req.to_unix_nanos();
  v1::FhirAuditEventsResponse resp;
  uint64_t after = 0;
  while (true) {
    bool more = false;
    ASSIGN_OR_RETURN(std::vector<v1::Event> page,
                     SubjectEvents(set.survivor, after, true, kMaxLimit, &more));
    for (const v1::Event& e : page) {
      after = e.header().seq();
      if (e.header().type() != names::event::kDisclosureRecorded) continue;
      const int64_t at = e.header().commit_time_unix_nanos();
      if (at < req.from_unix_nanos() || at >= to) continue;
      v1::DisclosureRecorded d;
      if (!d.ParseFromString(e.payload())) {
        return absl::DataLossError(absl::StrCat("event ", e.header().seq(), " does not parse"));
      }
      resp.add_audit_events_json(FhirAuditEvent(d, e.header().seq(), at, options_.hub_name));
    }
    if (!more) break;
  }
  RETURN_IF_ERROR(Record(who, "FhirAuditEvents", req, req.subject_id(), "fhir-audit-events"));
  return resp;
}

}  // namespace careloop::audit
