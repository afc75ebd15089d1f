#include "storage/ledger.h"

#include <future>

namespace careloop::storage {

absl::StatusOr<v1::Commit> Ledger::Append(v1::AppendRequest request) {
  std::promise<absl::StatusOr<v1::Commit>> promise;
  std::future<absl::StatusOr<v1::Commit>> future = promise.get_future();
  AppendAsync(std::move(request), [&promise](absl::StatusOr<v1::Commit> result) {
    promise.set_value(std::move(result));
  });
  return future.get();
}

absl::StatusOr<std::vector<v1::Event>> ReadStreamFrom(Ledger* ledger, absl::string_view stream,
                                                      uint64_t from_version,
                                                      bool include_payloads) {
  std::vector<v1::Event> out;
  uint64_t from = from_version;
  while (true) {
    v1::ReadStreamRequest req;
    req.set_stream(std::string(stream));
    req.set_from_version(from);
    req.set_include_payloads(include_payloads);
    absl::StatusOr<v1::ReadResponse> page = ledger->ReadStream(req);
    if (!page.ok()) return page.status();
    for (v1::Event& e : *page->mutable_events()) out.push_back(std::move(e));
    if (!page->more() || out.empty()) break;
    from = out.back().header().stream_version() + 1;
  }
  return out;
}

absl::StatusOr<std::vector<v1::Event>> ReadWholeStream(Ledger* ledger, absl::string_view stream,
                                                       bool include_payloads) {
  return ReadStreamFrom(ledger, stream, 1, include_payloads);
}

absl::StatusOr<std::vector<v1::Event>> ReadLastEvent(Ledger* ledger, absl::string_view stream) {
  absl::StatusOr<uint64_t> version = ledger->StreamVersion(stream);
  if (!version.ok()) return version.status();
  if (*version == 0) return std::vector<v1::Event>();
  v1::ReadStreamRequest req;
  req.set_stream(std::string(stream));
  req.set_from_version(*version);
  req.set_limit(1);
  req.set_include_payloads(true);
  absl::StatusOr<v1::ReadResponse> page = ledger->ReadStream(req);
  if (!page.ok()) return page.status();
  return std::vector<v1::Event>(page->events().begin(), page->events().end());
}

}  // namespace careloop::storage
