#include "storage/validate.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace careloop::storage {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool IsSegmentChar(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

}  // namespace

absl::Status ValidateStreamName(absl::string_view name, absl::string_view what) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " name is empty"));
  if (name.size() > 256) {
    return absl::InvalidArgumentError(absl::StrCat(what, " name is longer than 256 bytes"));
  }
  if (!(name[0] >= 'a' && name[0] <= 'z')) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " name must start with a lower-case letter"));
  }
  bool first_segment = true;
  size_t segment_len = 0;
  for (char c : name) {
    if (c == '/') {
      if (segment_len == 0) {
        return absl::InvalidArgumentError(absl::StrCat(what, " name has an empty segment"));
      }
      first_segment = false;
      segment_len = 0;
      continue;
    }
    bool ok =
        first_segment ? (IsLowerAlnum(c) || c == '.' || c == '_' || c == '-') : IsSegmentChar(c);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " name has a character that is not allowed (byte ",
                       static_cast<int>(static_cast<unsigned char>(c)), ")"));
    }
    ++segment_len;
  }
  if (segment_len == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " name has an empty segment"));
  }
  return absl::OkStatus();
}

absl::Status ValidateAgencyId(absl::string_view id) {
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError("agency id must be 1 to 128 bytes");
  }
  if (!IsLowerAlnum(id[0])) {
    return absl::InvalidArgumentError("agency id must start with [a-z0-9]");
  }
  for (char c : id) {
    if (!(IsLowerAlnum(c) || c == '.' || c == '-')) {
      return absl::InvalidArgumentError("agency id may hold only [a-z0-9.-]");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateToken(absl::string_view value, absl::string_view what) {
  if (value.empty() || value.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 to 128 bytes"));
  }
  for (char c : value) {
    if (!(IsAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-')) {
      return absl::InvalidArgumentError(absl::StrCat(what, " may hold only [A-Za-z0-9._:-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAppend(const v1::AppendRequest& req, const LedgerLimits& limits) {
  if (req.events().empty() && req.cursor_updates().empty()) {
    return absl::InvalidArgumentError("empty append: no events and no cursor updates");
  }
  if (static_cast<size_t>(req.events_size()) > limits.max_batch_events) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch has ", req.events_size(), " events; the limit is ", limits.max_batch_events));
  }
  if (static_cast<size_t>(req.preconditions_size()) > limits.max_preconditions) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", req.preconditions_size(),
                                                   " preconditions; the limit is ",
                                                   limits.max_preconditions));
  }
  if (static_cast<size_t>(req.cursor_updates_size()) > limits.max_cursor_updates) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", req.cursor_updates_size(),
                                                   " cursor updates; the limit is ",
                                                   limits.max_cursor_updates));
  }
  if (req.idempotency_key().size() > limits.max_idempotency_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("idempotency key is longer than ",
                                                   limits.max_idempotency_key_bytes, " bytes"));
  }
  size_t total = 0;
  for (int i = 0; i < req.events_size(); ++i) {
    const v1::EventInput& e = req.events(i);
    auto at = [i](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat("event ", i, ": ", s.message()));
    };
    if (absl::Status s = ValidateStreamName(e.stream()); !s.ok()) return at(s);
    if (absl::Status s = ValidateToken(e.type(), "event type"); !s.ok()) return at(s);
    if (!e.subject().empty()) {
      if (absl::Status s = ValidateToken(e.subject(), "subject id"); !s.ok()) return at(s);
    }
    if (static_cast<size_t>(e.agencies_size()) > limits.max_agencies_per_event) {
      return at(absl::InvalidArgumentError(absl::StrCat(
          "names ", e.agencies_size(), " agencies; the limit is ", limits.max_agencies_per_event)));
    }
    absl::flat_hash_set<absl::string_view> seen;
    for (const std::string& a : e.agencies()) {
      if (absl::Status s = ValidateAgencyId(a); !s.ok()) return at(s);
      if (!seen.insert(a).second) {
        return at(absl::InvalidArgumentError(absl::StrCat("names agency ", a, " twice")));
      }
    }
    if (e.payload().size() > limits.max_payload_bytes) {
      return at(absl::InvalidArgumentError(absl::StrCat(
          "payload is ", e.payload().size(), " bytes; the limit is ", limits.max_payload_bytes)));
    }
    total += e.payload().size() + e.stream().size() + e.type().size() + e.subject().size();
  }
  if (total > limits.max_batch_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch is ", total, " bytes; the limit is ", limits.max_batch_bytes));
  }
  for (int i = 0; i < req.preconditions_size(); ++i) {
    const v1::Precondition& p = req.preconditions(i);
    if (absl::Status s = ValidateStreamName(p.stream()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("precondition ", i, ": ", s.message()));
    }
    if (p.expectation_case() == v1::Precondition::EXPECTATION_NOT_SET) {
      return absl::InvalidArgumentError(
          absl::StrCat("precondition ", i, ": set expected_version or must_not_exist"));
    }
    if (p.expectation_case() == v1::Precondition::kMustNotExist && !p.must_not_exist()) {
      return absl::InvalidArgumentError(
          absl::StrCat("precondition ", i, ": must_not_exist, when set, must be true"));
    }
  }
  absl::flat_hash_set<absl::string_view> cursors;
  for (int i = 0; i < req.cursor_updates_size(); ++i) {
    const v1::CursorUpdate& c = req.cursor_updates(i);
    if (absl::Status s = ValidateStreamName(c.name(), "cursor"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cursor update ", i, ": ", s.message()));
    }
    if (!cursors.insert(c.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("cursor update ", i, ": cursor ", c.name(), " is updated twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStreamSegment(absl::string_view value, absl::string_view what) {
  if (value.empty() || value.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 to 128 bytes"));
  }
  for (char c : value) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok)
      return absl::InvalidArgumentError(absl::StrCat(what, " may hold only [A-Za-z0-9._:@-]"));
  }
  return absl::OkStatus();
}

}  // namespace careloop::storage
