#include "services/trust/certs.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace careloop::trust {
namespace {

template <typename T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Free<X509, X509_free>>;
using CrlPtr = std::unique_ptr<X509_CRL, Free<X509_CRL, X509_CRL_free>>;
using Bio = std::unique_ptr<BIO, Free<BIO, [](BIO* b) { BIO_free(b); }>>;
using Time = std::unique_ptr<ASN1_TIME, Free<ASN1_TIME, ASN1_TIME_free>>;
using Int = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER, ASN1_INTEGER_free>>;

absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat("OpenSSL: ", what));
}

absl::StatusOr<Pkey> NewP256Key() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (k == nullptr) return OpenSslError("EC P-256 key generation failed");
  return Pkey(k);
}

std::string BioString(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("writing a key");
  }
  return BioString(b.get());
}

absl::StatusOr<std::string> CertPem(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_X509(b.get(), c) != 1) return OpenSslError("writing a certificate");
  return BioString(b.get());
}

absl::StatusOr<Pkey> ReadKey(const std::string& pem) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* k = b ? PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr) : nullptr;
  if (k == nullptr) return absl::InvalidArgumentError("not a PEM private key");
  return Pkey(k);
}

absl::StatusOr<Cert> ReadCert(const std::string& pem) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* c = b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr;
  if (c == nullptr) return absl::InvalidArgumentError("not a PEM certificate");
  return Cert(c);
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError(absl::StrCat("extension ", OBJ_nid2sn(nid), "=", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? absl::OkStatus() : OpenSslError("adding an extension");
}

// A certificate for `key`, named `cn`, signed by (issuer, issuer_key) — or
// self-signed when issuer is null.
absl::StatusOr<Cert> NewCert(EVP_PKEY* key, const std::string& cn, uint64_t serial, absl::Time now,
                             absl::Duration validity, X509* issuer, EVP_PKEY* issuer_key,
                             const std::vector<std::pair<int, std::string>>& extensions) {
  Cert c(X509_new());
  if (!c) return OpenSslError("X509_new");
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(c.get()), serial);
  Time not_before(ASN1_TIME_set(nullptr, absl::ToTimeT(now - absl::Minutes(5))));
  Time not_after(ASN1_TIME_set(nullptr, absl::ToTimeT(now + validity)));
  X509_set1_notBefore(c.get(), not_before.get());
  X509_set1_notAfter(c.get(), not_after.get());
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("careloop"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer_cert = issuer != nullptr ? issuer : c.get();
  X509_set_issuer_name(c.get(), X509_get_subject_name(signer_cert));
  for (const auto& [nid, value] : extensions)
    RETURN_IF_ERROR(AddExt(c.get(), signer_cert, nid, value));
  if (X509_sign(c.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return OpenSslError("signing a certificate");
  }
  return c;
}

absl::StatusOr<PemPair> Issue(const PemPair& ca, const std::string& cn, uint64_t serial,
                              absl::Time now, absl::Duration validity,
                              const std::vector<std::pair<int, std::string>>& extensions) {
  ASSIGN_OR_RETURN(Pkey ca_key, ReadKey(ca.key_pem));
  ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(ca.cert_pem));
  ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  ASSIGN_OR_RETURN(Cert cert, NewCert(key.get(), cn, serial, now, validity, ca_cert.get(),
                                      ca_key.get(), extensions));
  PemPair out;
  ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(out.cert_pem, CertPem(cert.get()));
  out.serial = serial;
  return out;
}

}  // namespace

absl::StatusOr<PemPair> MakeCertificateAuthority(const std::string& common_name, absl::Time now,
                                                 absl::Duration validity) {
  ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  ASSIGN_OR_RETURN(Cert cert, NewCert(key.get(), common_name, 1, now, validity, nullptr, nullptr,
                                      {{NID_basic_constraints, "critical,CA:TRUE"},
                                       {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                       {NID_subject_key_identifier, "hash"}}));
  PemPair out;
  ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(out.cert_pem, CertPem(cert.get()));
  out.serial = 1;
  return out;
}

absl::StatusOr<PemPair> IssueServerCertificate(const PemPair& ca,
                                               const std::vector<std::string>& dns_names,
                                               const std::vector<std::string>& ip_addresses,
                                               uint64_t serial, absl::Time now,
                                               absl::Duration validity) {
  // The hub's identity to its own services (LedgerService accepts only it).
  std::string san = "URI:spiffe://careloop/hub";
  for (const auto& d : dns_names) absl::StrAppend(&san, san.empty() ? "" : ",", "DNS:", d);
  for (const auto& ip : ip_addresses) absl::StrAppend(&san, san.empty() ? "" : ",", "IP:", ip);
  if (san.empty())
    return absl::InvalidArgumentError("a server certificate needs a DNS name or an IP address");
  return Issue(ca, dns_names.empty() ? ip_addresses[0] : dns_names[0], serial, now, validity,
               {{NID_basic_constraints, "critical,CA:FALSE"},
                {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                {NID_ext_key_usage, "serverAuth,clientAuth"},
                {NID_subject_alt_name, san},
                {NID_authority_key_identifier, "keyid"}});
}

absl::StatusOr<PemPair> IssueAgencyCertificate(const PemPair& ca, const std::string& agency_id,
                                               uint64_t serial, absl::Time now,
                                               absl::Duration validity) {
  for (char c : agency_id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) {
      return absl::InvalidArgumentError("an agency id holds only [a-z0-9.-]");
    }
  }
  if (agency_id.empty()) return absl::InvalidArgumentError("empty agency id");
  if (agency_id == "hub") {
    return absl::InvalidArgumentError(
        "the agency id 'hub' is reserved: the hub's services use the server certificate and "
        "hub admins an admin certificate");
  }
  return Issue(ca, agency_id, serial, now, validity,
               {{NID_basic_constraints, "critical,CA:FALSE"},
                {NID_key_usage, "critical,digitalSignature"},
                {NID_ext_key_usage, "clientAuth"},
                {NID_subject_alt_name, absl::StrCat("URI:spiffe://careloop/agency/", agency_id)},
                {NID_authority_key_identifier, "keyid"}});
}

absl::StatusOr<PemPair> IssueAdminCertificate(const PemPair& ca, const std::string& user_id,
                                              uint64_t serial, absl::Time now,
                                              absl::Duration validity) {
  for (char c : user_id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) {
      return absl::InvalidArgumentError("a hub admin's user id holds only [a-z0-9._-]");
    }
  }
  if (user_id.empty()) return absl::InvalidArgumentError("empty user id");
  return Issue(ca, "admin-" + user_id, serial, now, validity,
               {{NID_basic_constraints, "critical,CA:FALSE"},
                {NID_key_usage, "critical,digitalSignature"},
                {NID_ext_key_usage, "clientAuth"},
                {NID_subject_alt_name, absl::StrCat("URI:spiffe://careloop/admin/", user_id)},
                {NID_authority_key_identifier, "keyid"}});
}

absl::StatusOr<Crl> MakeCrl(const PemPair& ca, const std::vector<uint64_t>& revoked_serials,
                            absl::Time now, absl::Duration validity) {
  ASSIGN_OR_RETURN(Pkey ca_key, ReadKey(ca.key_pem));
  ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(ca.cert_pem));
  CrlPtr crl(X509_CRL_new());
  if (!crl) return OpenSslError("X509_CRL_new");
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert.get()));
  Time last(ASN1_TIME_set(nullptr, absl::ToTimeT(now - absl::Minutes(5))));
  Time next(ASN1_TIME_set(nullptr, absl::ToTimeT(now + validity)));
  X509_CRL_set1_lastUpdate(crl.get(), last.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (uint64_t serial : revoked_serials) {
    X509_REVOKED* r = X509_REVOKED_new();
    Int s(ASN1_INTEGER_new());
    ASN1_INTEGER_set_uint64(s.get(), serial);
    X509_REVOKED_set_serialNumber(r, s.get());
    X509_REVOKED_set_revocationDate(r, last.get());
    X509_CRL_add0_revoked(crl.get(), r);
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca_key.get(), EVP_sha256()) == 0)
    return OpenSslError("signing the CRL");
  Bio b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_X509_CRL(b.get(), crl.get()) != 1) return OpenSslError("writing the CRL");
  Crl out;
  out.pem = BioString(b.get());
  char name[32];
  std::snprintf(name, sizeof name, "%08lx.r0",
                X509_NAME_hash_ex(X509_get_subject_name(ca_cert.get()), nullptr, nullptr, nullptr));
  out.file_name = name;
  return out;
}

}  // namespace careloop::trust
