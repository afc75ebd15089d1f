// Structured log lines: escaping keeps one event per line, in both formats.
#include "base/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace careloop::log {
namespace {

TEST(Log, Logfmt) {
  std::string line =
      Render(Format::kLogfmt, "ledger.append",
             {{"seq", uint64_t{42}}, {"stream", "referral/r-1"}, {"note", "two words"}});
  EXPECT_EQ(line, "event=ledger.append seq=42 stream=referral/r-1 note=\"two words\"");
}

TEST(Log, JsonEscapesNewlinesAndQuotes) {
  std::string line = Render(Format::kJson, "x", {{"v", "a\"b\nc"}, {"n", 3}, {"ok", true}});
  auto j = nlohmann::json::parse("{" + line + "}");
  EXPECT_EQ(j["v"], "a\"b\nc");
  EXPECT_EQ(j["n"], 3);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace careloop::log
