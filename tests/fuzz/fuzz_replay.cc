// Replays a fuzz corpus, then a bounded number of seeded mutations of it,
// through LLVMFuzzerTestOneInput. Same inputs on every run for a given seed.
//
//   fuzz_replay CORPUS_DIR [--mutations N] [--seed S] [--write-seeds]
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/protobuf_log.h"
#include "careloop/v1/ledger.pb.h"
#include "services/trust/envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(std::mt19937_64& rng, const std::vector<std::string>& corpus) {
  std::string s = corpus[rng() % corpus.size()];
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < edits; ++i) {
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // set a byte
        if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng());
        break;
      case 2:  // truncate
        if (!s.empty()) s.resize(rng() % s.size());
        break;
      case 3:  // insert bytes
        s.insert(s.empty() ? 0 : rng() % s.size(),
                 std::string(1 + rng() % 8, static_cast<char>(rng())));
        break;
      case 4: {  // splice another entry's tail
        const std::string& o = corpus[rng() % corpus.size()];
        if (!o.empty() && !s.empty())
          s = s.substr(0, rng() % s.size()) + o.substr(rng() % o.size());
        break;
      }
      case 5:  // a large length prefix
        if (s.size() > 2) {
          size_t at = rng() % (s.size() - 1);
          s[at] = '\x0a';
          s[at + 1] = '\xff';
        }
        break;
    }
  }
  return s;
}

// Seeds: a valid envelope, its duplicate id, and broken variants.
std::vector<std::pair<std::string, std::string>> Seeds() {
  auto key = careloop::trust::Ed25519PrivateKey::FromSeed(std::string(32, '\x01'));
  careloop::v1::Envelope e;
  careloop::v1::EventInput payload;
  payload.set_stream("referral/r-1");
  payload.set_type("ReferralSubmitted");
  payload.set_payload("{}");
  e.set_payload(payload.SerializeAsString());
  e.set_payload_type("careloop.v1.EventInput");
  e.set_sender_agency("org.stmarys");
  e.mutable_actor()->set_user_id("u-ana");
  e.mutable_actor()->set_display_name("Ana");
  e.mutable_actor()->set_role("sender");
  e.set_key_id("k1");
  e.set_created_unix_nanos(1'800'000'000'000'000'000);
  e.set_message_id("m-1");
  std::vector<std::pair<std::string, std::string>> out;
  out.push_back({"valid", *careloop::trust::SignEnvelope(e, *key)});
  careloop::v1::Envelope seen = e;
  seen.set_message_id("seen-1");
  out.push_back({"seen", *careloop::trust::SignEnvelope(seen, *key)});
  careloop::v1::Envelope other = e;
  other.set_payload_type("careloop.v1.AppendRequest");
  out.push_back({"other-type", *careloop::trust::SignEnvelope(other, *key)});
  out.push_back({"unsigned", e.SerializeAsString()});
  out.push_back({"empty", ""});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [--mutations N] [--seed S] [--write-seeds]\n",
                 argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  careloop::log::RouteProtobufLogsToDebug();
  long mutations = 20000;
  uint64_t seed = 1;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--mutations") && i + 1 < argc)
      mutations = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = std::strtoull(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--write-seeds")) {
      for (const auto& [name, bytes] : Seeds())
        std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
      return 0;
    }
  }
  std::vector<std::string> corpus;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    corpus.push_back(ss.str());
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "fuzz_replay: no corpus in %s\n", dir.c_str());
    return 2;
  }
  for (const auto& c : corpus) Run(c);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < mutations; ++i) Run(Mutate(rng, corpus));
  std::printf("fuzz_replay: %zu corpus inputs and %ld mutations (seed %llu): no crash\n",
              corpus.size(), mutations, static_cast<unsigned long long>(seed));
  return 0;
}
