// Fuzz target: envelope decoding and verification. Built two ways:
// - with libFuzzer (preset `fuzz`, clang) to run for as long as wanted;
// - with the g++/ASan test build, where fuzz_replay.cc replays the committed
//   corpus plus a bounded number of seeded mutations in the test command.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/protobuf_log.h"
#include "services/trust/envelope.h"

namespace {

using careloop::trust::AgencyView;
using careloop::trust::Ed25519PrivateKey;
using careloop::trust::KeyView;

class FixedDirectory final : public careloop::trust::EnvelopeDirectory {
 public:
  FixedDirectory() {
    AgencyView a;
    a.actor_roles["u-ana"] = {"sender"};
    auto key = Ed25519PrivateKey::FromSeed(std::string(32, '\x01'));
    KeyView k1;
    k1.public_key = key->public_key().raw();
    a.keys["k1"] = k1;
    agencies_["org.stmarys"] = a;
  }
  absl::StatusOr<std::optional<AgencyView>> FindAgency(absl::string_view id) override {
    auto it = agencies_.find(std::string(id));
    if (it == agencies_.end()) return std::optional<AgencyView>();
    return std::optional<AgencyView>(it->second);
  }

 private:
  std::map<std::string, AgencyView> agencies_;
};

class OneSeen final : public careloop::trust::MessageLog {
 public:
  absl::StatusOr<std::optional<careloop::trust::SeenMessage>> Find(absl::string_view sender,
                                                                   absl::string_view id) override {
    if (sender == "org.stmarys" && id == "seen-1") {
      return std::optional<careloop::trust::SeenMessage>(careloop::trust::SeenMessage{"x", 7});
    }
    return std::optional<careloop::trust::SeenMessage>();
  }
};

}  // namespace

// libFuzzer calls this once (the replay driver does the same itself).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  careloop::log::RouteProtobufLogsToDebug();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FixedDirectory* directory = new FixedDirectory();
  static OneSeen* seen = new OneSeen();
  static careloop::trust::RpcPolicy* policy = [] {
    auto* p = new careloop::trust::RpcPolicy();
    p->roles_by_payload_type["careloop.v1.EventInput"] = {"sender"};
    p->roles_by_payload_type["careloop.v1.AppendRequest"] = {"sender"};
    return p;
  }();
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto parsed = careloop::trust::ParseEnvelope(bytes, policy->limits);
  if (parsed.ok()) (void)careloop::trust::SigningInput(*parsed);
  auto verified = careloop::trust::VerifyEnvelope(bytes, *policy, *directory, *seen,
                                                  absl::FromUnixSeconds(1'800'000'000));
  (void)verified;
  return 0;
}
