#include "base/protobuf_log.h"

#include <google/protobuf/stubs/logging.h>

#include <string>

#include "base/log.h"

namespace careloop::log {

void RouteProtobufLogsToDebug() {
  google::protobuf::SetLogHandler(+[](google::protobuf::LogLevel level, const char* file, int line,
                                      const std::string& message) {
    if (level == google::protobuf::LOGLEVEL_FATAL) {
      Write(Level::kError, "protobuf.fatal",
            {{"file", file}, {"line", line}, {"message", message}});
      return;
    }
    // Messages name fields, never their values.
    Write(Level::kDebug, "protobuf.log", {{"file", file}, {"line", line}, {"message", message}});
  });
}

}  // namespace careloop::log
