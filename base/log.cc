#include "base/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace careloop::log {
namespace {

std::atomic<Format> g_format{Format::kLogfmt};

spdlog::logger* Logger() {
  static std::once_flag once;
  static std::shared_ptr<spdlog::logger> logger;
  std::call_once(once, [] {
    logger = std::make_shared<spdlog::logger>("careloop",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
  });
  return logger.get();
}

spdlog::level::level_enum ToSpd(Level l) {
  switch (l) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void AppendEscaped(std::string* out, absl::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
}

bool NeedsQuotes(absl::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x21) return true;
  }
  return false;
}

std::string Body(Format format, absl::string_view event, std::initializer_list<Field> fields) {
  std::string out;
  if (format == Format::kJson) {
    out.append("\"event\":\"");
    AppendEscaped(&out, event);
    out.push_back('"');
    for (const Field& f : fields) {
      out.append(",\"");
      AppendEscaped(&out, f.key());
      out.append("\":");
      if (f.quoted()) {
        out.push_back('"');
        AppendEscaped(&out, f.value());
        out.push_back('"');
      } else {
        out.append(f.value());
      }
    }
  } else {
    out.append("event=");
    out.append(event.data(), event.size());
    for (const Field& f : fields) {
      out.push_back(' ');
      out.append(f.key().data(), f.key().size());
      out.push_back('=');
      if (f.quoted() && NeedsQuotes(f.value())) {
        out.push_back('"');
        AppendEscaped(&out, f.value());
        out.push_back('"');
      } else {
        out.append(f.value());
      }
    }
  }
  return out;
}

}  // namespace

void Init(Level level, Format format) {
  g_format.store(format);
  Logger()->set_level(ToSpd(level));
}

bool ParseLevel(absl::string_view s, Level* out) {
  if (s == "debug")
    *out = Level::kDebug;
  else if (s == "info")
    *out = Level::kInfo;
  else if (s == "warn")
    *out = Level::kWarn;
  else if (s == "error")
    *out = Level::kError;
  else
    return false;
  return true;
}

bool ParseFormat(absl::string_view s, Format* out) {
  if (s == "logfmt")
    *out = Format::kLogfmt;
  else if (s == "json")
    *out = Format::kJson;
  else
    return false;
  return true;
}

std::string Render(Format format, absl::string_view event, std::initializer_list<Field> fields) {
  return Body(format, event, fields);
}

void Write(Level level, absl::string_view event, std::initializer_list<Field> fields) {
  spdlog::logger* logger = Logger();
  if (!logger->should_log(ToSpd(level))) return;
  Format format = g_format.load();
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  std::string body = Body(format, event, fields);
  if (format == Format::kJson) {
    logger->log(ToSpd(level), "{{\"ts\":\"{}\",\"level\":\"{}\",{}}}", ts, LevelName(level), body);
  } else {
    logger->log(ToSpd(level), "ts={} level={} {}", ts, LevelName(level), body);
  }
}

}  // namespace careloop::log
