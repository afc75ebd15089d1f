// The one mapping between absl::Status (inside) and grpc::Status (the edge).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace careloop {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace careloop
