// X.509 for mTLS between agencies and the hub: a deployment CA, the hub's
// server certificate, one client certificate per agency with the URI SAN
// spiffe://careloop/agency/<id>, and certificate revocation lists. ECDSA P-256
// keys (what every TLS stack offers), SHA-256 signatures, OpenSSL 3 only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace careloop::trust {

struct PemPair {
  std::string key_pem;   // PKCS#8 private key
  std::string cert_pem;  // X.509 certificate
  uint64_t serial = 0;
};

// A self-signed CA (basicConstraints CA:TRUE, keyCertSign and cRLSign).
absl::StatusOr<PemPair> MakeCertificateAuthority(const std::string& common_name, absl::Time now,
                                                 absl::Duration validity);

// The hub's certificate: DNS and IP SANs, usable as server and as client (the
// hub's services call each other with it).
absl::StatusOr<PemPair> IssueServerCertificate(const PemPair& ca,
                                               const std::vector<std::string>& dns_names,
                                               const std::vector<std::string>& ip_addresses,
                                               uint64_t serial, absl::Time now,
                                               absl::Duration validity);

// An agency's client certificate: URI SAN spiffe://careloop/agency/<id>;
// never for the reserved id "hub".
absl::StatusOr<PemPair> IssueAgencyCertificate(const PemPair& ca, const std::string& agency_id,
                                               uint64_t serial, absl::Time now,
                                               absl::Duration validity);

// A hub admin's client certificate: URI SAN spiffe://careloop/admin/<user>.
// It signs directory changes as "hub"; it reaches neither the ledger nor
// compliance reads (services/policy/tables.cc).
absl::StatusOr<PemPair> IssueAdminCertificate(const PemPair& ca, const std::string& user_id,
                                              uint64_t serial, absl::Time now,
                                              absl::Duration validity);

// A CRL by the CA listing `revoked_serials`, and the file name OpenSSL (and so
// gRPC's crl_directory) looks it up by: <issuer name hash>.r0.
struct Crl {
  std::string pem;
  std::string file_name;
};
absl::StatusOr<Crl> MakeCrl(const PemPair& ca, const std::vector<uint64_t>& revoked_serials,
                            absl::Time now, absl::Duration validity);

}  // namespace careloop::trust
