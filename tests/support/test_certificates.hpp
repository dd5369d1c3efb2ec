// Certificates a test makes for itself with OpenSSL: a CA, a server certificate it signed for localhost and
// 127.0.0.1, one that expired yesterday, and a second CA that signed nothing of ours. Written as PEM files into a
// fresh directory, removed with the object.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace tether::test {

class test_certificates {
public:
  test_certificates() : directory_(make_directory()) {
    const auto ca_key = new_key();
    const auto ca = new_certificate(ca_key.get(), nullptr, ca_key.get(), "tether test CA", 0, 86400, true);
    const auto server_key = new_key();
    const auto server = new_certificate(server_key.get(), ca.get(), ca_key.get(), "localhost", 0, 86400, false);
    const auto expired = new_certificate(server_key.get(), ca.get(), ca_key.get(), "localhost", -2 * 86400, -86400, false);
    const auto other_key = new_key();
    const auto other_ca = new_certificate(other_key.get(), nullptr, other_key.get(), "unrelated CA", 0, 86400, true);
    write(ca_file(), ca.get());
    write(server_certificate_file(), server.get());
    write(expired_certificate_file(), expired.get());
    write(other_ca_file(), other_ca.get());
    write(server_key_file(), server_key.get());
  }
  test_certificates(const test_certificates&) = delete;
  test_certificates& operator=(const test_certificates&) = delete;
  ~test_certificates() {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  std::string ca_file() const { return path("ca.pem"); }
  std::string other_ca_file() const { return path("other-ca.pem"); }
  std::string server_certificate_file() const { return path("server.pem"); }
  std::string expired_certificate_file() const { return path("expired.pem"); }
  std::string server_key_file() const { return path("server.key"); }

private:
  struct key_deleter {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
  };
  struct certificate_deleter {
    void operator()(X509* certificate) const { X509_free(certificate); }
  };
  using key_ptr = std::unique_ptr<EVP_PKEY, key_deleter>;
  using certificate_ptr = std::unique_ptr<X509, certificate_deleter>;

  static std::filesystem::path make_directory() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tether-certificates-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      throw std::runtime_error{"cannot make a directory for test certificates"};
    return pattern;
  }

  static key_ptr new_key() {
    key_ptr key{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")};
    if (!key)
      throw std::runtime_error{"cannot make a test key"};
    return key;
  }

  static void add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
    X509V3_CTX context;
    X509V3_set_ctx(&context, issuer ? issuer : certificate, certificate, nullptr, nullptr, 0);
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
    if (!extension)
      throw std::runtime_error{"cannot make a certificate extension"};
    X509_add_ext(certificate, extension, -1);
    X509_EXTENSION_free(extension);
  }

  static certificate_ptr new_certificate(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const char* name,
                                         long not_before, long not_after, bool authority) {
    certificate_ptr certificate{X509_new()};
    static long serial = 1;
    X509_set_version(certificate.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), serial++);
    X509_gmtime_adj(X509_getm_notBefore(certificate.get()), not_before);
    X509_gmtime_adj(X509_getm_notAfter(certificate.get()), not_after);
    X509_set_pubkey(certificate.get(), key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(certificate.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name), -1, -1, 0);
    X509_set_issuer_name(certificate.get(), issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(certificate.get()));
    if (authority) {
      add_extension(certificate.get(), issuer, NID_basic_constraints, "critical,CA:TRUE");
      add_extension(certificate.get(), issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add_extension(certificate.get(), issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
      add_extension(certificate.get(), issuer, NID_ext_key_usage, "serverAuth");
    }
    if (X509_sign(certificate.get(), issuer_key, EVP_sha256()) == 0)
      throw std::runtime_error{"cannot sign a test certificate"};
    return certificate;
  }

  void write(const std::string& file, X509* certificate) const {
    std::unique_ptr<FILE, int (*)(FILE*)> out{std::fopen(file.c_str(), "w"), &std::fclose};
    if (!out || PEM_write_X509(out.get(), certificate) != 1)
      throw std::runtime_error{"cannot write " + file};
  }

  void write(const std::string& file, EVP_PKEY* key) const {
    std::unique_ptr<FILE, int (*)(FILE*)> out{std::fopen(file.c_str(), "w"), &std::fclose};
    if (!out || PEM_write_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
      throw std::runtime_error{"cannot write " + file};
  }

  std::string path(const char* name) const { return (directory_ / name).string(); }

  std::filesystem::path directory_;
};

} // namespace tether::test
