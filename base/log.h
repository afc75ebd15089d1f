// Structured logging: one event name plus key=value fields per line.
//
// Log ids, sizes and codes; never names, birth dates, notes or payloads (PHI).
// Fields are given as pairs so that a reviewer can see at each call site
// exactly what leaves the process.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace careloop::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kLogfmt, kJson };

// Configures the process-wide logger (stderr). Safe to call more than once.
void Init(Level level, Format format);
bool ParseLevel(absl::string_view s, Level* out);
bool ParseFormat(absl::string_view s, Format* out);

class Field {
 public:
  Field(absl::string_view k, absl::string_view v) : key_(k), value_(v), quoted_(true) {}
  Field(absl::string_view k, const char* v) : key_(k), value_(v), quoted_(true) {}
  Field(absl::string_view k, const std::string& v) : key_(k), value_(v), quoted_(true) {}
  Field(absl::string_view k, int64_t v) : key_(k), value_(std::to_string(v)), quoted_(false) {}
  Field(absl::string_view k, uint64_t v) : key_(k), value_(std::to_string(v)), quoted_(false) {}
  Field(absl::string_view k, int v) : key_(k), value_(std::to_string(v)), quoted_(false) {}
  Field(absl::string_view k, unsigned v) : key_(k), value_(std::to_string(v)), quoted_(false) {}
  Field(absl::string_view k, double v) : key_(k), value_(std::to_string(v)), quoted_(false) {}
  Field(absl::string_view k, bool v) : key_(k), value_(v ? "true" : "false"), quoted_(false) {}

  absl::string_view key() const { return key_; }
  const std::string& value() const { return value_; }
  bool quoted() const { return quoted_; }

 private:
  absl::string_view key_;
  std::string value_;
  bool quoted_;
};

void Write(Level level, absl::string_view event, std::initializer_list<Field> fields);

inline void Debug(absl::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kDebug, e, f);
}
inline void Info(absl::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kInfo, e, f);
}
inline void Warn(absl::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kWarn, e, f);
}
inline void Error(absl::string_view e, std::initializer_list<Field> f = {}) {
  Write(Level::kError, e, f);
}

// Renders one line without the timestamp and level (for tests).
std::string Render(Format format, absl::string_view event, std::initializer_list<Field> fields);

}  // namespace careloop::log
