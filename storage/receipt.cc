#include "storage/receipt.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "storage/merkle.h"

namespace careloop::storage {

absl::StatusOr<Checkpoint> VerifySignedHead(const v1::SignedHead& head, const NoteVerifier& key) {
  ASSIGN_OR_RETURN(Checkpoint cp, OpenCheckpoint(head.checkpoint(), key));
  if (cp.tree_size != head.tree_size() || head.root_hash() != AsStringView(cp.root) ||
      cp.time_unix_nanos != head.time_unix_nanos() || LogIdOfOrigin(cp.origin) != head.log_id()) {
    return absl::InvalidArgumentError("the head's fields differ from its signed checkpoint");
  }
  return cp;
}

absl::StatusOr<v1::EventHeader> VerifyReceipt(const v1::Receipt& receipt, const NoteVerifier& key,
                                              const std::optional<std::string>& payload) {
  ASSIGN_OR_RETURN(Checkpoint cp, VerifySignedHead(receipt.head(), key));
  v1::EventHeader header;
  if (!header.ParseFromString(receipt.header_bytes()) || header.seq() == 0) {
    return absl::InvalidArgumentError("the receipt's event header does not parse");
  }
  if (receipt.proof().leaf_index() != header.seq() - 1 ||
      receipt.proof().tree_size() != cp.tree_size) {
    return absl::InvalidArgumentError("the inclusion proof is for another leaf or tree size");
  }
  std::vector<std::string> proof(receipt.proof().hashes().begin(), receipt.proof().hashes().end());
  if (absl::Status s = merkle::VerifyInclusion(header.seq() - 1, cp.tree_size,
                                               merkle::HashLeaf(receipt.header_bytes()), proof,
                                               AsStringView(cp.root));
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("inclusion proof: ", s.message()));
  }
  if (payload.has_value() && AsStringView(Sha256(*payload)) != header.payload_sha256()) {
    return absl::InvalidArgumentError("the payload does not match the receipt's payload hash");
  }
  return header;
}

absl::StatusOr<VerifiedConsistency> VerifyConsistencyProof(const v1::SignedHead& head1,
                                                           const v1::SignedHead& head2,
                                                           const v1::ConsistencyProof& proof,
                                                           const NoteVerifier& key) {
  VerifiedConsistency v;
  ASSIGN_OR_RETURN(v.head1, VerifySignedHead(head1, key));
  ASSIGN_OR_RETURN(v.head2, VerifySignedHead(head2, key));
  const std::string id1 = LogIdOfOrigin(v.head1.origin), id2 = LogIdOfOrigin(v.head2.origin);
  if (id1 != id2) {
    return absl::InvalidArgumentError(
        absl::StrCat("the heads are of two logs (log id ", id1, " and log id ", id2,
                     "): a restore started a new log, and no proof connects them"));
  }
  if (proof.size1() != v.head1.tree_size || proof.size2() != v.head2.tree_size) {
    return absl::InvalidArgumentError(absl::StrCat("the proof says sizes ", proof.size1(), " and ",
                                                   proof.size2(), " but the signed heads are ",
                                                   v.head1.tree_size, " and ", v.head2.tree_size));
  }
  std::vector<std::string> hashes(proof.hashes().begin(), proof.hashes().end());
  RETURN_IF_ERROR(merkle::VerifyConsistency(v.head1.tree_size, v.head2.tree_size, hashes,
                                            AsStringView(v.head1.root),
                                            AsStringView(v.head2.root)));
  return v;
}

}  // namespace careloop::storage
