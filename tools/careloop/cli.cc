#include "tools/careloop/cli.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace careloop::cli {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<grpc::Channel> Connect(const Globals& g) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!g.tls_ca.empty()) {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = ReadFile(g.tls_ca).value_or("");
    if (!g.tls_cert.empty()) {
      opts.pem_cert_chain = ReadFile(g.tls_cert).value_or("");
      opts.pem_private_key = ReadFile(g.tls_key).value_or("");
    }
    creds = grpc::SslCredentials(opts);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(g.hub, creds, args);
}

int Fail(const absl::Status& status) {
  std::cerr << "careloop: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << "\n";
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kUnavailable;
    default:
      return kRejected;
  }
}

int FailUsage(const std::string& message) {
  std::cerr << "careloop: " << message << "\n";
  return kUsage;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

absl::Status FromJson(const std::string& json, google::protobuf::Message* m) {
  auto s = google::protobuf::util::JsonStringToMessage(json, m);
  if (!s.ok()) return absl::InvalidArgumentError(std::string(s.message()));
  return absl::OkStatus();
}

absl::Status LoadProfile(const std::string& name, Globals* g) {
  std::string path;
  if (const char* env = std::getenv("CARELOOP_PROFILES"); env != nullptr && *env != '\0') {
    path = env;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    path = std::string(home) + "/.config/careloop/profiles.toml";
  }
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("profiles ", path, ": ", std::string(e.description())));
  }
  const toml::table* p = t[name].as_table();
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("no profile '", name, "' in ", path));
  for (const auto& [key, value] : *p) {
    std::optional<std::string> v = value.value<std::string>();
    if (!v)
      return absl::InvalidArgumentError(
          absl::StrCat("profile ", name, ": ", std::string(key.str()), " must be a string"));
    g->profile[std::string(key.str())] = *v;
  }
  auto take = [&](const char* key, std::string* out) {
    if (auto it = g->profile.find(key); it != g->profile.end()) *out = it->second;
  };
  take("hub", &g->hub);
  take("tls_ca", &g->tls_ca);
  take("tls_cert", &g->tls_cert);
  take("tls_key", &g->tls_key);
  return absl::OkStatus();
}

}  // namespace careloop::cli
