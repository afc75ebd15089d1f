// A small real HTTP/1.1 server on loopback for webhook tests: it records every
// POST and answers with the status the test chose. Down() closes the
// listening socket (connections are refused); Up() listens again on the same
// port.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace careloop::testing {

class TestHttpServer {
 public:
  struct Request {
    std::string method, path, body;
    std::map<std::string, std::string> headers;  // lower-case names
  };

  // Picks a free port; starts down unless `up`.
  explicit TestHttpServer(bool up = true) {
    int fd = Bind(0);
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::close(fd);
    if (up) Up();
  }
  ~TestHttpServer() { Down(); }

  int port() const { return port_; }
  std::string Url(const std::string& path = "/hook") const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

  void Up() {
    if (thread_.joinable()) return;
    listen_fd_ = Bind(port_);
    ::listen(listen_fd_, 16);
    stop_ = false;
    thread_ = std::thread([this] { Serve(); });
  }
  void Down() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  void AnswerWith(int status) { status_ = status; }

  std::vector<Request> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // Waits (woken by each request) until one satisfies `match`.
  bool WaitFor(const std::function<bool(const Request&)>& match, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto found = [&] {
      for (const Request& r : requests_)
        if (match(r)) return true;
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  }

 private:
  static int Bind(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  void Serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) continue;
      Handle(c);
      ::close(c);
    }
  }

  void Handle(int c) {
    std::string in;
    char buf[4096];
    size_t header_end = std::string::npos;
    size_t want = 0;
    while (true) {
      if (header_end == std::string::npos) {
        header_end = in.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          for (absl::string_view line : absl::StrSplit(in.substr(0, header_end), "\r\n")) {
            const size_t colon = line.find(':');
            if (colon == absl::string_view::npos) continue;
            if (absl::AsciiStrToLower(line.substr(0, colon)) == "content-length") {
              (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &want);
            }
          }
        }
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + want) break;
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    Request r;
    std::vector<std::string> lines = absl::StrSplit(in.substr(0, header_end), "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    r.method = first.size() > 0 ? first[0] : "";
    r.path = first.size() > 1 ? first[1] : "";
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    r.body = in.substr(header_end + 4, want);
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(r));
    }
    const std::string out = absl::StrCat("HTTP/1.1 ", status_.load(),
                                         " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    (void)!::write(c, out.data(), out.size());
  }

  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> status_{204};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Request> requests_;
};

}  // namespace careloop::testing
