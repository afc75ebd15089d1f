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

}  // namespace careloop::storage
