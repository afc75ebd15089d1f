// careloopd configuration: defaults, the TOML file, flags over the file, and
// refusals of unsafe or inconsistent settings.
#include "services/careloopd/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/test_env.h"

namespace careloop::hub {
namespace {

absl::StatusOr<HubConfig> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "careloopd");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  bool exit_now = false;
  std::string out;
  return ParseHubConfig(static_cast<int>(argv.size()), argv.data(), &exit_now, &out);
}

TEST(Config, Defaults) {
  auto c = Parse({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen, "127.0.0.1:7400");
  EXPECT_EQ(c->data_dir, "./var");
  EXPECT_TRUE(c->runs("ledger"));
  EXPECT_TRUE(c->runs("directory"));
  EXPECT_TRUE(c->runs("consent"));
  EXPECT_TRUE(c->runs("referral"));
  EXPECT_EQ(c->break_glass_default, absl::Hours(1));
  EXPECT_EQ(c->idempotency_window, absl::Hours(168));
  EXPECT_EQ(c->log_key_path(), "./var/keys/hub-log.pem");
  EXPECT_FALSE(c->tls());
}

TEST(Config, FileThenFlags) {
  careloop::testing::TempDir dir;
  std::string path = dir.Sub("c.toml");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:9000\"\nservices = \"all\"\n"
                         "[storage]\ndata_dir = \"/srv/careloop\"\n"
                         "[ledger]\nidempotency_window = \"48h\"\nmax_batch_events = 50\n"
                         "[envelope]\nmax_clock_skew = \"2m\"\n"
                         "[directory]\nextra_service_codes = [\"diapers\", \"pet-food\"]\n"
                         "[consent]\nextra_categories = [\"genetic-testing\"]\n"
                         "break_glass_default = \"30m\"\n"
                         "[referral]\ndeadline_urgent = \"90m\"\nmax_attempts = 4\n"
                         "[log]\nformat = \"json\"\n";
  auto c = Parse({"--config", path, "--data-dir", "/tmp/other"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen, "127.0.0.1:9000");
  EXPECT_EQ(c->data_dir, "/tmp/other");  // the flag wins
  EXPECT_EQ(c->idempotency_window, absl::Hours(48));
  EXPECT_EQ(c->max_clock_skew, absl::Minutes(2));
  EXPECT_EQ(c->extra_consent_categories, std::vector<std::string>{"genetic-testing"});
  EXPECT_EQ(c->break_glass_default, absl::Minutes(30));
  EXPECT_EQ(c->deadline_urgent, absl::Minutes(90));
  EXPECT_EQ(c->max_attempts, 4u);
  EXPECT_EQ(c->limits.max_batch_events, 50u);
  EXPECT_EQ(c->log_format, "json");
  EXPECT_EQ(c->extra_service_codes, (std::vector<std::string>{"diapers", "pet-food"}));
  EXPECT_TRUE(c->runs("directory"));
}

TEST(Config, TheProductionExampleInDeployIsValid) {
  auto c = Parse({"--config", std::string(CARELOOP_SOURCE_DIR) + "/deploy/config/careloopd.toml"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tls());
  EXPECT_EQ(c->listen, "0.0.0.0:7400");
  EXPECT_EQ(c->tls_crl_dir, "/etc/careloop/pki/crl");
  EXPECT_EQ(c->admin_public_key, "/etc/careloop/hub-admin.pub");
  EXPECT_TRUE(c->runs("ledger"));
  EXPECT_TRUE(c->runs("directory"));
  EXPECT_EQ(c->max_clock_skew, absl::Minutes(5));
  EXPECT_TRUE(c->runs("notification"));
  EXPECT_TRUE(c->runs("audit"));
  EXPECT_EQ(c->webhook_key_path(), "/var/lib/careloop/keys/webhook.pem");
  EXPECT_EQ(c->webhook_disable_after, absl::Hours(72));
  EXPECT_EQ(c->ack_timeout, absl::Seconds(30));
  EXPECT_EQ(c->delivery_window, 256u);
}

TEST(Config, Notification) {
  auto c =
      Parse({"--ack-timeout", "5s", "--delivery-window", "16", "--webhook-disable-after", "24h"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ack_timeout, absl::Seconds(5));
  EXPECT_EQ(c->delivery_window, 16u);
  EXPECT_EQ(c->webhook_disable_after, absl::Hours(24));
  EXPECT_EQ(Parse({"--ack-timeout", "0s"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--delivery-window", "0"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Parse({"--services", "notification", "--ledger", "unix:/tmp/x/ledger.sock"}).status().code(),
      absl::StatusCode::kOk);
}

// The ledger is internal: its own unix socket by default, TCP only with TLS.
TEST(Config, TheLedgerListensOnItsOwnSocketAndNeverOnTcpWithoutTls) {
  auto c = Parse({"--data-dir", "/srv/careloop"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ledger_listen_address(), "unix:/srv/careloop/run/ledger.sock");
  EXPECT_EQ(Parse({"--ledger-listen", "127.0.0.1:7401"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--services", "notification", "--ledger", "127.0.0.1:1"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--ledger-listen", "unix:/tmp/l.sock"})->ledger_listen_address(),
            "unix:/tmp/l.sock");
}

TEST(Config, ReadPagesFitTheLargestMessage) {
  auto c = Parse({"--max-read-bytes", "2097152"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.max_read_bytes, 2u << 20);
  EXPECT_EQ(Parse({})->limits.max_read_bytes, 3u << 20);
  EXPECT_EQ(Parse({"--max-read-bytes", "0"}).status().code(), absl::StatusCode::kInvalidArgument);
  // A page (or one event) must fit a message with room to spare.
  EXPECT_EQ(Parse({"--max-read-bytes", std::to_string(16 << 20)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--max-payload-bytes", std::to_string(16 << 20)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Config, Refusals) {
  EXPECT_EQ(Parse({"--listen", "0.0.0.0:7400"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--services", "bogus"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--services", ""}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--tls-cert", "a.pem"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--tls-cert", "a", "--tls-key", "b"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--idempotency-window", "soon"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--log-level", "loud"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--no-such-flag"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--deadline-stat", "0s"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--max-attempts", "0"}).status().code(), absl::StatusCode::kInvalidArgument);
  auto referral = Parse({"--deadline-urgent", "90m", "--max-attempts", "5"});
  ASSERT_TRUE(referral.ok()) << referral.status();
  EXPECT_EQ(referral->deadline_urgent, absl::Minutes(90));
  EXPECT_EQ(referral->max_attempts, 5u);
  EXPECT_EQ(referral->deadline_routine, absl::Hours(48));
  EXPECT_EQ(Parse({"--break-glass-default", "25h"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--break-glass-default", "0s"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--consent-category", "Bad Category"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto consent = Parse({"--break-glass-default", "30m", "--consent-category", "genetic-testing"});
  ASSERT_TRUE(consent.ok()) << consent.status();
  EXPECT_EQ(consent->break_glass_default, absl::Minutes(30));
  EXPECT_EQ(consent->extra_consent_categories, std::vector<std::string>{"genetic-testing"});
  // The idempotency window may not be shorter than the allowed clock skew.
  auto short_window = Parse({"--idempotency-window", "2m", "--max-clock-skew", "5m"});
  EXPECT_EQ(short_window.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      std::string(short_window.status().message()).find("shorter than envelope.max_clock_skew"),
      std::string::npos);
  EXPECT_TRUE(Parse({"--idempotency-window", "5m", "--max-clock-skew", "5m"}).ok());
  // TLS allows a non-loopback address.
  EXPECT_TRUE(Parse({"--listen", "0.0.0.0:7400", "--tls-cert", "c", "--tls-key", "k",
                     "--tls-client-ca", "ca"})
                  .ok());
  careloop::testing::TempDir dir;
  std::ofstream(dir.Sub("bad.toml")) << "[server\nlisten=";
  auto bad = Parse({"--config", dir.Sub("bad.toml")});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("bad.toml"), std::string::npos);
}

}  // namespace
}  // namespace careloop::hub
