// Small builders for append requests in tests.
#pragma once

#include <string>

#include "careloop/v1/ledger.pb.h"

namespace careloop::testing {

inline v1::AppendRequest Event(const std::string& stream, const std::string& type = "NoteAdded",
                               const std::string& payload = "payload") {
  v1::AppendRequest r;
  v1::EventInput* e = r.add_events();
  e->set_stream(stream);
  e->set_type(type);
  e->set_payload(payload);
  return r;
}

inline void MustNotExist(v1::AppendRequest* r, const std::string& stream) {
  v1::Precondition* p = r->add_preconditions();
  p->set_stream(stream);
  p->set_must_not_exist(true);
}

inline void ExpectVersion(v1::AppendRequest* r, const std::string& stream, uint64_t v) {
  v1::Precondition* p = r->add_preconditions();
  p->set_stream(stream);
  p->set_expected_version(v);
}

}  // namespace careloop::testing
