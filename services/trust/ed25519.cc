#include "services/trust/ed25519.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "base/status.h"

namespace careloop::trust {
namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

absl::StatusOr<std::string> RawPublic(EVP_PKEY* key) {
  std::string raw(kEd25519PublicKeySize, '\0');
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1 ||
      len != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError("not an Ed25519 key");
  }
  return raw;
}

bool IsEd25519(EVP_PKEY* key) { return EVP_PKEY_is_a(key, "ED25519") == 1; }

// Refuses an encrypted key instead of OpenSSL's default, which would prompt
// for a passphrase on the terminal (services/trust/encrypted_key.h reads
// encrypted keys).
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRaw(absl::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("an Ed25519 public key is 32 bytes, got ", raw.size()));
  }
  PkeyPtr key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
  if (!key) return absl::InvalidArgumentError("invalid Ed25519 public key");
  return Ed25519PublicKey(std::move(key), std::string(raw));
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRawCached(absl::string_view raw) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new absl::flat_hash_map<std::string, Ed25519PublicKey>();
  {
    absl::MutexLock lock(&mu);
    if (auto it = cache->find(raw); it != cache->end()) return it->second;
  }
  ASSIGN_OR_RETURN(Ed25519PublicKey key, FromRaw(raw));
  absl::MutexLock lock(&mu);
  if (cache->size() >= 4096) cache->clear();  // bounded
  cache->emplace(std::string(raw), key);
  return key;
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key || !IsEd25519(key.get())) {
    return absl::InvalidArgumentError("not a PEM Ed25519 public key");
  }
  ASSIGN_OR_RETURN(std::string raw, RawPublic(key.get()));
  return Ed25519PublicKey(std::move(key), std::move(raw));
}

bool Ed25519PublicKey::Verify(absl::string_view message, absl::string_view signature) const {
  if (signature.size() != kEd25519SignatureSize) return false;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  if (EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key_.get(), nullptr) !=
      1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

std::string Ed25519PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  CARELOOP_CHECK(bio && PEM_write_bio_PUBKEY(bio.get(), key_.get()) == 1);
  return BioToString(bio.get());
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Generate() {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) return absl::InternalError("Ed25519 key generation failed");
  PkeyPtr key(raw);
  ASSIGN_OR_RETURN(std::string pub_raw, RawPublic(key.get()));
  ASSIGN_OR_RETURN(Ed25519PublicKey pub, Ed25519PublicKey::FromRaw(pub_raw));
  return Ed25519PrivateKey(std::move(key), std::move(pub));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromSeed(absl::string_view seed) {
  if (seed.size() != kEd25519SeedSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("an Ed25519 private key (seed) is 32 bytes, got ", seed.size()));
  }
  PkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (!key) return absl::InvalidArgumentError("invalid Ed25519 private key");
  ASSIGN_OR_RETURN(std::string pub_raw, RawPublic(key.get()));
  ASSIGN_OR_RETURN(Ed25519PublicKey pub, Ed25519PublicKey::FromRaw(pub_raw));
  return Ed25519PrivateKey(std::move(key), std::move(pub));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!key || !IsEd25519(key.get())) {
    return absl::InvalidArgumentError("not a PEM Ed25519 private key (or one that is encrypted)");
  }
  ASSIGN_OR_RETURN(std::string pub_raw, RawPublic(key.get()));
  ASSIGN_OR_RETURN(Ed25519PublicKey pub, Ed25519PublicKey::FromRaw(pub_raw));
  return Ed25519PrivateKey(std::move(key), std::move(pub));
}

absl::StatusOr<std::string> Ed25519PrivateKey::Sign(absl::string_view message) const {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return absl::ResourceExhaustedError("out of memory");
  if (EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key_.get(), nullptr) !=
      1) {
    return absl::InternalError("EVP_DigestSignInit_ex failed");
  }
  std::string sig(kEd25519SignatureSize, '\0');
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      len != kEd25519SignatureSize) {
    return absl::InternalError("EVP_DigestSign failed");
  }
  return sig;
}

std::string Ed25519PrivateKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  CARELOOP_CHECK(bio && PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0,
                                                 nullptr, nullptr) == 1);
  return BioToString(bio.get());
}

absl::StatusOr<Ed25519PrivateKey> LoadPrivateKeyFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("key file ", path, ": ", ErrnoMessage(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("key file ", path, " is readable by group or others; run: chmod 600 ", path));
  }
  std::ifstream in(path);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read key file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto key = Ed25519PrivateKey::FromPem(ss.str());
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", path, ": ", key.status().message()));
  }
  return key;
}

absl::Status WritePrivateKeyFile(const std::string& path, const Ed25519PrivateKey& key) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create key file ", path, ": ", ErrnoMessage(errno)));
  }
  std::string pem = key.ToPem();
  size_t off = 0;
  while (off < pem.size()) {
    ssize_t n = ::write(fd, pem.data() + off, pem.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("writing key file ", path, ": ", ErrnoMessage(errno)));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("fsync of key file ", path, ": ", ErrnoMessage(errno)));
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<Ed25519PrivateKey> LoadOrGeneratePrivateKeyFile(const std::string& path,
                                                               bool* generated) {
  *generated = false;
  struct stat st;
  if (stat(path.c_str(), &st) == 0) return LoadPrivateKeyFile(path);
  ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  RETURN_IF_ERROR(WritePrivateKeyFile(path, key));
  *generated = true;
  return key;
}

}  // namespace careloop::trust
