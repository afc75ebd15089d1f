#include "services/trust/append.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "careloop/v1/audit.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/names/names.h"

namespace careloop::trust {

v1::EventInput* AddEvent(v1::AppendRequest* req, std::string stream, absl::string_view type,
                         absl::string_view subject, std::string payload) {
  v1::EventInput* e = req->add_events();
  e->set_stream(std::move(stream));
  e->set_type(std::string(type));
  if (!subject.empty()) e->set_subject(std::string(subject));
  if (!payload.empty()) e->set_payload(std::move(payload));
  return e;
}

void Expect(v1::AppendRequest* req, std::string stream, uint64_t version) {
  v1::Precondition* p = req->add_preconditions();
  p->set_stream(std::move(stream));
  if (version == 0) {
    p->set_must_not_exist(true);
  } else {
    p->set_expected_version(version);
  }
}

v1::AppendRequest ReadRecord(absl::string_view caller, absl::string_view actor,
                             absl::string_view rpc, const google::protobuf::Message& request) {
  v1::AuditQueried q;
  q.set_agency(std::string(caller));
  q.set_actor(std::string(actor));
  q.set_rpc(std::string(rpc));
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(request, q.mutable_request_json(), o);
  v1::AppendRequest req;
  AddEvent(&req, names::stream::Audit(caller), names::event::kAuditQueried, {},
           q.SerializeAsString());
  return req;
}

v1::AppendRequest AccessRecord(const v1::RecordAccessed& read) {
  v1::AppendRequest req;
  v1::EventInput* ev =
      AddEvent(&req, names::stream::Audit(read.agency()), names::event::kRecordAccessed,
               read.subject_id(), read.SerializeAsString());
  ev->add_agencies(read.agency());
  return req;
}

absl::Status Corrupt(const v1::Event& e, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("event seq ", e.header().seq(), " (", e.header().type(), ") ", what));
}

}  // namespace careloop::trust
