// What the referral core's files share (referral_core.cc, submit.cc,
// views.cc, status.cc, threads.cc, escalation.cc): a referral's folded state
// and small helpers. Private to services/referral: tools/lint/structure.py
// refuses an include of it from anywhere else.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "careloop/v1/referral.pb.h"
#include "services/names/names.h"
#include "services/referral/referral_core.h"
#include "services/trust/append.h"

namespace careloop::referral {

using trust::Corrupt;
using trust::Expect;

inline constexpr absl::Duration kProjectionWait = absl::Seconds(10);
inline constexpr int kDecisionAttempts = 3;
// Every referral's routing opens and settles here; escalation reads it.
using names::stream::kRoutingIndex;

template <typename T>
inline absl::StatusOr<T> Parse(const v1::Event& e, absl::string_view bytes) {
  T p;
  if (!p.ParseFromString(std::string(bytes))) return Corrupt(e, "does not parse");
  return p;
}

inline std::string DedupeStream(absl::string_view sender, absl::string_view subject,
                                absl::string_view category) {
  return names::stream::Dedupe(sender, subject, category);
}

inline std::string Key(absl::string_view sender, absl::string_view id) {
  return absl::StrCat(sender, "/", id);
}

// What one recipient held while the referral was routed to it, kept when the
// referral moves on: a former recipient is shown that, nothing after.
struct Tenure {
  std::vector<v1::WithheldSection> withheld;
  v1::TaskStatus status = v1::TASK_STATUS_UNSPECIFIED;
  v1::Outcome outcome;
  size_t history = 0;  // entries of the history it saw
  uint64_t version = 0;
  uint32_t attempt = 0;
  int64_t viewed_at = 0;
  int64_t delivered_at = 0;
};

struct ReferralCore::State {
  std::string sender, referral_id;
  std::string manifest_envelope;
  v1::ReferralManifest manifest;
  std::vector<v1::Section> sections;
  std::string subject_id;
  std::string recipient;
  std::set<std::string> recipients;      // current and former
  std::map<std::string, Tenure> former;  // by agency, as the referral left it
  std::vector<v1::WithheldSection> withheld;
  v1::TaskStatus status = v1::TASK_STATUS_UNSPECIFIED;
  v1::Outcome outcome;
  uint64_t version = 0;
  std::vector<v1::ReferralHistoryEntry> history;
  absl::Time routed_at;  // the current routing's commit time
  uint32_t attempt = 0;
  bool unassigned = false;
  v1::StatusReason last_reason;
  int64_t viewed_at = 0;        // by the current recipient
  int64_t delivered_at = 0;     // to the current recipient
  uint32_t warned_attempt = 0;  // the routing attempt a deadline warning was sent for
};

}  // namespace careloop::referral
