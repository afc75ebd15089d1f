// Envelope verifications per second on one core, next to the raw OpenSSL
// Ed25519 verify rate over the same signing inputs, measured in the same run.
//
//   envelope_bench [--count 20000]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/protobuf_log.h"
#include "base/runtime.h"
#include "careloop/v1/ledger.pb.h"
#include "services/names/names.h"
#include "services/trust/envelope.h"
#include "tools/bench/bench_main.h"

using namespace careloop;

namespace {
class Directory final : public trust::EnvelopeDirectory {
 public:
  absl::StatusOr<std::optional<trust::AgencyView>> FindAgency(absl::string_view id) override {
    auto it = agencies.find(std::string(id));
    if (it == agencies.end()) return std::optional<trust::AgencyView>();
    return std::optional<trust::AgencyView>(it->second);
  }
  std::map<std::string, trust::AgencyView> agencies;
};
class NoneSeen final : public trust::MessageLog {
 public:
  absl::StatusOr<std::optional<trust::SeenMessage>> Find(absl::string_view,
                                                         absl::string_view) override {
    return std::optional<trust::SeenMessage>();
  }
};
}  // namespace

int Main(int argc, char** argv) {
  careloop::ApplyReleaseRuntimeDefaults();
  CLI::App app{"envelope verification rate"};
  int count = 20000;
  app.add_option("--count", count, "envelopes");
  CLI11_PARSE(app, argc, argv);
  log::RouteProtobufLogsToDebug();
  auto key = trust::Ed25519PrivateKey::Generate();
  Directory dir;
  trust::AgencyView a;
  a.actor_roles["u-ana"] = {"sender"};
  trust::KeyView k1;
  k1.public_key = key->public_key().raw();
  a.keys["k1"] = k1;
  dir.agencies["org.stmarys"] = a;
  NoneSeen seen;
  trust::RpcPolicy policy;
  policy.roles_by_payload_type["careloop.v1.EventInput"] = {"sender"};
  const absl::Time now = absl::Now();
  std::vector<std::string> envelopes;
  std::vector<std::pair<std::string, std::string>> raw;  // signing input, signature
  for (int i = 0; i < count; ++i) {
    v1::EventInput payload;
    payload.set_stream(names::stream::Referral("r-" + std::to_string(i)));
    payload.set_type(names::event::kReferralSubmitted);
    payload.set_payload(std::string(1024, 'x'));
    v1::Envelope e;
    e.set_payload(payload.SerializeAsString());
    e.set_payload_type("careloop.v1.EventInput");
    e.set_sender_agency("org.stmarys");
    e.mutable_actor()->set_user_id("u-ana");
    e.mutable_actor()->set_display_name("Ana Ruiz, RN");
    e.mutable_actor()->set_role("sender");
    e.set_key_id("k1");
    e.set_created_unix_nanos(absl::ToUnixNanos(now));
    e.set_message_id(absl::StrCat("m-", i));
    std::string bytes = *trust::SignEnvelope(e, *key);
    v1::Envelope parsed = *trust::ParseEnvelope(bytes, trust::EnvelopeLimits());
    raw.push_back({trust::SigningInput(parsed), parsed.signature()});
    envelopes.push_back(std::move(bytes));
  }
  const trust::Ed25519PublicKey& pub = key->public_key();
  absl::Time t0 = absl::Now();
  int ok = 0;
  for (const auto& [input, sig] : raw) ok += pub.Verify(input, sig) ? 1 : 0;
  double raw_rate = count / absl::ToDoubleSeconds(absl::Now() - t0);
  t0 = absl::Now();
  for (const auto& bytes : envelopes)
    ok += trust::VerifyEnvelope(bytes, policy, dir, seen, now).ok() ? 1 : 0;
  double env_rate = count / absl::ToDoubleSeconds(absl::Now() - t0);
  if (ok != 2 * count) {
    std::fprintf(stderr, "verification failed\n");
    return 1;
  }
  std::printf("| raw OpenSSL Ed25519 verify (one core) | %.0f /s |\n", raw_rate);
  std::printf("| VerifyEnvelope, 1 KiB payload (one core) | %.0f /s | %.0f %% of raw |\n", env_rate,
              100 * env_rate / raw_rate);
  return 0;
}

int main(int argc, char** argv) { return careloop::bench::RunMain(Main, argc, argv); }
