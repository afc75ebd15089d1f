// Who read what: the per-person access audit (AuditService.Access). A read
// of a person's records is a RecordAccessed in the person's events; a
// staff member's own changes are the envelopes that name them as actor.
// Compliance sees every agency's; an agency only its own staff's, so a read
// by one agency never shows in another's answer.
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "services/audit/audit_core.h"
#include "services/audit/bundle.h"
#include "services/names/names.h"
#include "services/trust/append.h"
#include "services/trust/envelope.h"
#include "storage/validate.h"

namespace careloop::audit {

namespace {

constexpr size_t kMaxAccessEntries = 10'000;

// "referral/<sender>/<id>" -> ("referral", "<sender>/<id>"); other streams
// name only their kind (a consent stream's key is a person's id).
std::pair<std::string, std::string> RecordOf(const std::string& stream) {
  const size_t slash = stream.find('/');
  const std::string kind = stream.substr(0, slash);
  if ((kind == "referral" || kind == "thread") && slash != std::string::npos)
    return {kind, stream.substr(slash + 1)};
  return {kind, ""};
}

// One candidate event as an entry: a read (RecordAccessed, or an
// AuditQueried naming its actor) or a change a staff member signed.
std::optional<v1::AccessEntry> EntryOf(const v1::Event& e) {
  const auto& h = e.header();
  v1::AccessEntry out;
  out.set_seq(h.seq());
  out.set_at_unix_nanos(h.commit_time_unix_nanos());
  if (h.type() == names::event::kRecordAccessed) {
    v1::RecordAccessed r;
    if (!r.ParseFromString(e.payload())) return std::nullopt;
    out.set_agency(r.agency());
    out.set_actor(r.actor());
    out.set_kind("read");
    out.set_what(r.rpc());
    out.set_record_type(r.record_type());
    out.set_record_id(r.record_id());
    *out.mutable_sections() = r.sections();
    return out;
  }
  if (h.type() == names::event::kAuditQueried) {
    v1::AuditQueried q;
    if (!q.ParseFromString(e.payload())) return std::nullopt;
    out.set_agency(q.agency());
    out.set_actor(q.actor());
    out.set_kind("read");
    out.set_what(q.rpc());
    out.set_record_type("query");
    return out;
  }
  if (!CarriesEnvelope(h.type())) return std::nullopt;
  v1::Envelope env;
  if (!env.ParseFromString(e.payload())) return std::nullopt;
  out.set_agency(env.sender_agency());
  out.set_actor(env.actor().user_id());
  out.set_kind("signed");
  out.set_what(h.type());
  auto [type, id] = RecordOf(h.stream());
  out.set_record_type(type);
  out.set_record_id(id);
  return out;
}

absl::Status ValidateAccess(const v1::AccessRequest& req) {
  const int selectors = !req.subject_id().empty() + !req.actor().empty() + !req.referral().empty();
  if (selectors != 1)
    return absl::InvalidArgumentError("name one of subject_id, actor (with agency) or referral");
  if (!req.agency().empty()) RETURN_IF_ERROR(storage::ValidateAgencyId(req.agency()));
  if (!req.actor().empty()) RETURN_IF_ERROR(storage::ValidateToken(req.actor(), "actor"));
  if (!req.subject_id().empty())
    RETURN_IF_ERROR(storage::ValidateToken(req.subject_id(), "subject_id"));
  if (req.to_unix_nanos() != 0 && req.to_unix_nanos() < req.from_unix_nanos())
    return absl::InvalidArgumentError("the period ends before it starts");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<v1::Event>> AuditCore::AllSubjectEvents(absl::string_view subject) {
  std::vector<v1::Event> out;
  uint64_t after = 0;
  while (true) {
    bool more = false;
    ASSIGN_OR_RETURN(std::vector<v1::Event> page,
                     SubjectEvents(subject, after, /*payloads=*/true, kMaxPage, &more));
    for (v1::Event& e : page) {
      after = e.header().seq();
      out.push_back(std::move(e));
    }
    if (!more || page.empty()) return out;
  }
}

absl::StatusOr<std::vector<v1::Event>> AuditCore::ActorEvents(absl::string_view agency) {
  // The agency's own index (what it signed and its recorded reads) and its
  // audit stream (reads recorded before they named a person), by seq.
  std::map<uint64_t, v1::Event> by_seq;
  uint64_t after = 0;
  while (true) {
    v1::ReadIndexRequest r;
    r.set_agency(std::string(agency));
    r.set_after_seq(after);
    r.set_limit(kMaxPage);
    r.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse page, ledger_->ReadIndex(r));
    for (v1::Event& e : *page.mutable_events()) {
      after = e.header().seq();
      by_seq.emplace(after, std::move(e));
    }
    if (!page.more() || page.events().empty()) break;
  }
  ASSIGN_OR_RETURN(std::vector<v1::Event> audit,
                   storage::ReadWholeStream(ledger_, names::stream::Audit(agency)));
  for (v1::Event& e : audit) by_seq.emplace(e.header().seq(), std::move(e));
  std::vector<v1::Event> out;
  out.reserve(by_seq.size());
  for (auto& [seq, e] : by_seq) out.push_back(std::move(e));
  return out;
}

absl::StatusOr<std::string> AuditCore::SubjectOfReferral(absl::string_view referral) {
  ASSIGN_OR_RETURN(
      std::vector<v1::Event> events,
      storage::ReadWholeStream(ledger_, absl::StrCat(names::stream::kReferralPrefix, referral),
                               /*payloads=*/false));
  for (const v1::Event& e : events)
    if (!e.header().subject().empty()) return e.header().subject();
  return std::string();
}

absl::StatusOr<v1::AccessResponse> AuditCore::Access(const v1::AccessRequest& req,
                                                     const policy::Caller& who) {
  ASSIGN_OR_RETURN(const std::string caller, Admit(who, "Access"));
  RETURN_IF_ERROR(ValidateAccess(req));
  const bool compliance = consent_->IsCompliance(caller);
  const std::string agency = req.agency().empty() ? caller : req.agency();
  if (!req.actor().empty() && !compliance && agency != caller) {
    return absl::PermissionDeniedError(
        absl::StrCat("agency ", caller, " may ask only about its own staff"));
  }
  std::vector<v1::Event> candidates;
  std::string subject = req.subject_id();
  if (!req.referral().empty()) {
    if (req.referral().find('/') == std::string::npos)
      return absl::InvalidArgumentError("a referral is named <sender>/<referral id>");
    ASSIGN_OR_RETURN(subject, SubjectOfReferral(req.referral()));
  }
  if (!req.actor().empty()) {
    ASSIGN_OR_RETURN(candidates, ActorEvents(agency));
  } else if (!subject.empty()) {
    absl::StatusOr<std::vector<v1::Event>> events = AllSubjectEvents(subject);
    // A person the hub does not know and one the caller may not ask about
    // get the same (empty) answer.
    if (!events.ok() && !(absl::IsNotFound(events.status()) && !compliance)) return events.status();
    if (events.ok()) candidates = *std::move(events);
  }
  const int64_t to = req.to_unix_nanos() == 0 ? INT64_MAX : req.to_unix_nanos();
  v1::AccessResponse resp;
  for (const v1::Event& e : candidates) {
    const int64_t at = e.header().commit_time_unix_nanos();
    if (at < req.from_unix_nanos() || at >= to) continue;
    std::optional<v1::AccessEntry> entry = EntryOf(e);
    if (!entry) continue;
    if (!compliance && entry->agency() != caller) continue;
    if (!req.actor().empty() && (entry->actor() != req.actor() || entry->agency() != agency))
      continue;
    if (!req.referral().empty() && (entry->kind() != "read" || entry->record_type() != "referral" ||
                                    entry->record_id() != req.referral())) {
      continue;
    }
    if (!subject.empty() && req.referral().empty() && entry->kind() != "read") continue;
    if (static_cast<size_t>(resp.entries_size()) >= kMaxAccessEntries) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", kMaxAccessEntries, " entries; ask about a shorter period"));
    }
    *resp.add_entries() = *std::move(entry);
  }
  // About a person (named, or the one the referral is about): in their trail.
  RETURN_IF_ERROR(Record(who, "Access", req, subject, "access-trail"));
  return resp;
}

}  // namespace careloop::audit
