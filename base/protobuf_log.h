// libprotobuf's own log lines, routed into careloop's logger.
#pragma once

namespace careloop::log {

// Routes libprotobuf's own log lines into this logger at debug level. Parsing
// untrusted bytes (an envelope with invalid UTF-8) makes libprotobuf log an
// ERROR per message; left alone, any client could flood the hub's log.
void RouteProtobufLogsToDebug();

}  // namespace careloop::log
