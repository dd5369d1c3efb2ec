// What OpenSSL itself keeps per idle server session, without tether: sessions of the same server context
// handshaken in this process over memory BIOs, their record buffers freed and their BIOs replaced by empty ones,
// measured with mallinfo2. The TLS variant's cost minus this is what tls_codec adds.
#pragma once

#include "test_certificates.hpp"

#include <tether/tls.hpp>

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <vector>

#include <malloc.h>

namespace bench::memory {

namespace detail {
inline void move_ciphertext(BIO* from, BIO* to) {
  std::array<char, 16 * 1024> chunk;
  for (int n; (n = BIO_read(from, chunk.data(), static_cast<int>(chunk.size()))) > 0;)
    BIO_write(to, chunk.data(), n);
}
} // namespace detail

inline double openssl_bytes_per_idle_session(std::size_t sessions) {
  const tether::test::test_certificates files;
  std::error_code ec;
  const auto server_context = tether::tls_server_context(files.server_certificate_file(), files.server_key_file(), ec);
  if (!server_context)
    throw std::runtime_error{"cannot make a TLS server context: " + ec.message()};
  const std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> client_context{SSL_CTX_new(TLS_client_method()),
                                                                          &SSL_CTX_free};
  const auto new_session = [](SSL_CTX* context) {
    SSL* ssl = SSL_new(context);
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    return ssl;
  };
  std::vector<std::unique_ptr<SSL, decltype(&SSL_free)>> kept;
  std::size_t before = 0;
  for (std::size_t i = 0; i <= sessions; ++i) {
    if (i == 1)  // the first session pays for OpenSSL's one-time initialisation
      before = mallinfo2().uordblks;
    std::unique_ptr<SSL, decltype(&SSL_free)> server{new_session(server_context->native_handle()), &SSL_free};
    std::unique_ptr<SSL, decltype(&SSL_free)> client{new_session(client_context.get()), &SSL_free};
    SSL_set_mode(server.get(), SSL_MODE_RELEASE_BUFFERS);
    SSL_set_accept_state(server.get());
    SSL_set_connect_state(client.get());
    for (int flight = 0; flight < 4; ++flight) {
      SSL_do_handshake(client.get());
      detail::move_ciphertext(SSL_get_wbio(client.get()), SSL_get_rbio(server.get()));
      SSL_do_handshake(server.get());
      detail::move_ciphertext(SSL_get_wbio(server.get()), SSL_get_rbio(client.get()));
    }
    if (SSL_is_init_finished(server.get()) != 1)
      throw std::runtime_error{"the in-process TLS handshake did not finish"};
    SSL_free_buffers(server.get());
    SSL_set_bio(server.get(), BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    if (i > 0)
      kept.push_back(std::move(server));
  }
  return static_cast<double>(mallinfo2().uordblks - before) / static_cast<double>(sessions);
}

} // namespace bench::memory
