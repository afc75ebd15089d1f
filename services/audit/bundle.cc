#include "services/audit/bundle.h"

#include <google/protobuf/util/json_util.h>

#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/sha256.h"
#include "services/names/names.h"
#include "services/trust/ed25519.h"
#include "services/trust/envelope.h"
#include "storage/merkle.h"
#include "storage/receipt.h"

namespace careloop::audit {

bool CarriesEnvelope(absl::string_view type) {
  static const auto* types = new std::set<std::string, std::less<>>{
      names::event::kReferralSubmitted, names::event::kStatusChanged,
      names::event::kThreadMessage,     names::event::kGrantConsent,
      names::event::kAmendConsent,      names::event::kRevokeConsent,
      names::event::kLinkIdentifier,    names::event::kMergeSubjects,
      names::event::kBreakGlass,        names::event::kReviewBreakGlass,
      names::event::kSetWebhook,        names::event::kReplayDeadLetters,
      names::event::kRegisterAgency,    names::event::kUpdateAgencyProfile,
      names::event::kSetAgencyStatus,   names::event::kAddAgencyKey,
      names::event::kRevokeAgencyKey,   names::event::kSetActor,
      names::event::kRemoveActor,       names::event::kReportCapacity};
  return types->contains(type);
}

std::string BundleToJsonLines(const v1::ExportResponse& bundle) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  for (const v1::BundleLine& line : bundle.lines()) {
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(line, &json, o);
    absl::StrAppend(&out, json, "\n");
  }
  return out;
}

absl::StatusOr<v1::ExportResponse> ParseBundle(absl::string_view jsonl) {
  v1::ExportResponse out;
  size_t n = 0;
  for (absl::string_view line : absl::StrSplit(jsonl, '\n')) {
    ++n;
    if (line.empty()) continue;
    v1::BundleLine parsed;
    google::protobuf::util::JsonParseOptions o;
    if (!google::protobuf::util::JsonStringToMessage(std::string(line), &parsed, o).ok() ||
        parsed.line_case() == v1::BundleLine::LINE_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat("line ", n, " of the bundle does not parse"));
    }
    *out.add_lines() = std::move(parsed);
  }
  return out;
}

namespace {

BundleReport Bad(BundleReport r, size_t line, uint64_t seq, std::string problem) {
  r.ok = false;
  r.bad_line = line;
  r.bad_seq = seq;
  r.problem = std::move(problem);
  return r;
}

}  // namespace

BundleReport VerifyBundle(const v1::ExportResponse& bundle, const storage::NoteVerifier& key) {
  BundleReport r;
  const auto& lines = bundle.lines();
  if (lines.empty() || lines[0].line_case() != v1::BundleLine::kHead) {
    return Bad(r, 1, 0, "the bundle does not start with a signed head");
  }
  absl::StatusOr<storage::Checkpoint> head = storage::VerifySignedHead(lines[0].head(), key);
  if (!head.ok()) {
    return Bad(r, 1, 0, absl::StrCat("the head does not verify: ", head.status().message()));
  }
  r.tree_size = head->tree_size;
  const std::string root = ToBytes(head->root);
  // Keys first (they come last in the file).
  std::map<std::pair<std::string, std::string>, v1::BundleKey> keys;
  for (const auto& l : lines)
    if (l.line_case() == v1::BundleLine::kKey)
      keys[{l.key().agency_id(), l.key().key_id()}] = l.key();

  struct Seen {
    size_t line;
    uint64_t seq;
  };
  std::vector<Seen> events;
  const v1::AuditExport* manifest = nullptr;
  v1::AuditExport parsed_manifest;
  size_t export_line = 0;
  for (int i = 1; i < lines.size(); ++i) {
    const size_t line_no = static_cast<size_t>(i) + 1;
    const auto& l = lines[i];
    if (l.line_case() == v1::BundleLine::kKey) continue;
    if (l.line_case() == v1::BundleLine::kHead) return Bad(r, line_no, 0, "a second head");
    const bool is_export = l.line_case() == v1::BundleLine::kExport;
    const v1::BundleEvent& e = is_export ? l.export_() : l.event();
    if (export_line != 0) return Bad(r, line_no, 0, "an event after the export record");
    v1::EventHeader h;
    if (!h.ParseFromString(e.header_bytes()) || h.seq() == 0) {
      return Bad(r, line_no, 0, "an event header that does not parse");
    }
    std::vector<std::string> proof(e.proof().begin(), e.proof().end());
    if (h.seq() > r.tree_size ||
        !storage::merkle::VerifyInclusion(h.seq() - 1, r.tree_size,
                                          storage::merkle::HashLeaf(e.header_bytes()), proof, root)
             .ok()) {
      return Bad(r, line_no, h.seq(),
                 absl::StrCat("event seq ", h.seq(),
                              " is not in the log under the bundle's head (altered or inserted)"));
    }
    if (!e.payload_withheld()) {
      if (ToBytes(Sha256(e.payload())) != h.payload_sha256()) {
        return Bad(r, line_no, h.seq(),
                   absl::StrCat("the payload of seq ", h.seq(), " does not match its digest"));
      }
      if (CarriesEnvelope(h.type())) {
        absl::StatusOr<v1::Envelope> env =
            trust::ParseEnvelope(e.payload(), trust::EnvelopeLimits());
        if (!env.ok()) {
          return Bad(
              r, line_no, h.seq(),
              absl::StrCat("seq ", h.seq(), " should hold an envelope: ", env.status().message()));
        }
        auto k = keys.find({env->sender_agency(), env->key_id()});
        if (k == keys.end()) {
          return Bad(r, line_no, h.seq(),
                     absl::StrCat("no key ", env->key_id(), " of ", env->sender_agency(),
                                  " in the bundle for seq ", h.seq()));
        }
        const int64_t t = env->created_unix_nanos();
        const v1::BundleKey& bk = k->second;
        const bool valid = t >= bk.not_before_unix_nanos() &&
                           (bk.not_after_unix_nanos() == 0 || t < bk.not_after_unix_nanos()) &&
                           (bk.revoked_unix_nanos() == 0 || t < bk.revoked_unix_nanos());
        absl::StatusOr<trust::Ed25519PublicKey> pub =
            trust::Ed25519PublicKey::FromRaw(bk.public_key());
        if (!valid || !pub.ok() || !pub->Verify(trust::SigningInput(*env), env->signature())) {
          return Bad(r, line_no, h.seq(),
                     absl::StrCat("the envelope in seq ", h.seq(), " does not verify with key ",
                                  env->key_id(), " of ", env->sender_agency()));
        }
        ++r.envelopes;
      }
    }
    if (is_export) {
      if (e.payload_withheld() || h.type() != names::event::kAuditExport ||
          !parsed_manifest.ParseFromString(e.payload())) {
        return Bad(r, line_no, h.seq(), "the export record is not an AuditExport with its payload");
      }
      manifest = &parsed_manifest;
      export_line = line_no;
      continue;
    }
    events.push_back({line_no, h.seq()});
    ++r.events;
  }
  if (manifest == nullptr) return Bad(r, lines.size(), 0, "the bundle has no export record");
  r.query = manifest->query();
  // The log says which events the bundle holds: compare position by position.
  for (size_t i = 0; i < events.size() || i < static_cast<size_t>(manifest->seqs_size()); ++i) {
    if (i >= static_cast<size_t>(manifest->seqs_size())) {
      return Bad(r, events[i].line, events[i].seq,
                 absl::StrCat("seq ", events[i].seq, " is not in the export record (inserted)"));
    }
    if (i >= events.size()) {
      return Bad(r, export_line, 0,
                 absl::StrCat("seq ", manifest->seqs(i), " is missing (dropped)"));
    }
    if (events[i].seq != manifest->seqs(i)) {
      return Bad(r, events[i].line, events[i].seq,
                 absl::StrCat("expected seq ", manifest->seqs(i), ", found seq ", events[i].seq,
                              " (dropped, inserted or reordered)"));
    }
  }
  r.ok = true;
  return r;
}

MonitorResult CheckHead(const std::optional<MonitorState>& last, const v1::SignedHead& head,
                        const v1::ConsistencyProof& proof, const storage::NoteVerifier& key) {
  MonitorResult r;
  absl::StatusOr<storage::Checkpoint> cp = storage::VerifySignedHead(head, key);
  if (!cp.ok()) {
    r.problem = absl::StrCat("FORGED HEAD: size ", head.tree_size(),
                             " is not signed by the hub's key: ", cp.status().message());
    return r;
  }
  r.next.log_id = storage::LogIdOfOrigin(cp->origin);
  r.next.tree_size = cp->tree_size;
  r.next.root = ToBytes(cp->root);
  r.next.checkpoint = head.checkpoint();
  if (!last.has_value()) {
    r.ok = true;
    return r;
  }
  auto both = [&] {
    return absl::StrCat("\n  last seen: log ", last->log_id, " size ", last->tree_size, " root ",
                        HexEncode(last->root), "\n  now:       log ", r.next.log_id, " size ",
                        r.next.tree_size, " root ", HexEncode(r.next.root));
  };
  if (r.next.log_id != last->log_id) {
    r.problem = absl::StrCat("LOG ID CHANGED: this is not the log seen before", both());
    return r;
  }
  if (r.next.tree_size < last->tree_size) {
    r.problem = absl::StrCat("ROLLED BACK: the log is smaller than before", both());
    return r;
  }
  if (r.next.tree_size == last->tree_size) {
    if (r.next.root != last->root) {
      r.problem = absl::StrCat("FORKED: the same size with another root", both());
      return r;
    }
    r.ok = true;
    return r;
  }
  std::vector<std::string> hashes(proof.hashes().begin(), proof.hashes().end());
  if (proof.size1() != last->tree_size || proof.size2() != r.next.tree_size ||
      !storage::merkle::VerifyConsistency(last->tree_size, r.next.tree_size, hashes, last->root,
                                          r.next.root)
           .ok()) {
    r.problem = absl::StrCat(
        "NOT CONSISTENT: the new head does not extend the last one (history rewritten)", both());
    return r;
  }
  r.ok = true;
  return r;
}

std::string MonitorStateToText(const MonitorState& s) {
  return absl::StrCat("log ", s.log_id, "\nsize ", s.tree_size, "\nroot ",
                      absl::Base64Escape(s.root), "\n", s.checkpoint);
}

absl::StatusOr<MonitorState> MonitorStateFromText(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, absl::MaxSplits('\n', 3));
  MonitorState s;
  std::string root;
  if (lines.size() < 4 || !absl::ConsumePrefix(&lines[0], "log ") ||
      !absl::ConsumePrefix(&lines[1], "size ") || !absl::ConsumePrefix(&lines[2], "root ") ||
      !absl::SimpleAtoi(lines[1], &s.tree_size) || !absl::Base64Unescape(lines[2], &root) ||
      root.size() != 32) {
    return absl::InvalidArgumentError("the monitor's state file does not parse");
  }
  s.log_id = std::string(lines[0]);
  s.root = root;
  s.checkpoint = std::string(lines[3]);
  return s;
}

}  // namespace careloop::audit
