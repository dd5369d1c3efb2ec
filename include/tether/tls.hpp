// TLS under any codec: tether::tls_codec<Inner> encrypts what Inner frames, on asio::ssl's context and OpenSSL.
// Optional: only this header needs OpenSSL (link tether::tls, which finds it).
//
//   std::error_code ec;
//   auto context = tether::tls_server_context("server.pem", "server.key", ec);
//   tether::listener server{io, {.port = 443}, tether::tls_codec<tether::websocket_codec>{.context = context}, liveness};
//
//   auto trust = tether::tls_client_context("ca.pem", ec);  // empty file name: the system's certificate store
//   tether::connector client{io, {.host = "example.org", .service = "443"},
//                            tether::tls_codec<tether::line_codec>{.context = trust, .side = tether::tls_role::client,
//                                                                  .server_name = "example.org"}};
//
// Without a context the codec passes bytes through to Inner untouched: one server type can then serve TLS or plain
// TCP as its configuration says (a port behind a TLS-terminating proxy, say).
//
// TLS is a codec wrapped around another, so everything the connection does stays as it is over plain TCP: the
// connection still owns and reads the TCP socket itself, socket options and kernel strategies act on that socket,
// heartbeat, idle reaper and limits work unchanged, and an idle connection pins no read buffer. The handshake is
// the codec's handshake: frames sent earlier wait for it, and `handshake_timeout` bounds TLS and the inner codec's
// own handshake (WebSocket's upgrade) together; a failure closes with handshake_failed and OpenSSL's reason as the
// detail (with the certificate check's own reason when verification failed). A client checks the server's
// certificate against the context's trust store, sends `server_name` as SNI and requires the certificate to carry
// it. A graceful close sends the inner codec's closing frame and then close_notify. Records the peer breaks after
// the handshake close the connection with protocol_error. OpenSSL's read and write buffers are released whenever
// they are empty (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection does not pin them.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/detail/config.hpp>

#include <asio/ip/address.hpp>
#include <asio/ssl/context.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace tether {

enum class tls_role : std::uint8_t { server, client };

// A server's context: its certificate chain and private key (PEM files), TLS 1.2 or newer.
inline std::shared_ptr<asio::ssl::context> tls_server_context(const std::string& certificate_chain_file,
                                                             const std::string& private_key_file,
                                                             std::error_code& ec) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                       ec);
  if (!ec)
    context->use_certificate_chain_file(certificate_chain_file, ec);
  if (!ec)
    context->use_private_key_file(private_key_file, asio::ssl::context::pem, ec);
  // Resumption goes by stateless tickets; a session cache would keep every connection's session in memory.
  if (!ec)
    SSL_CTX_set_session_cache_mode(context->native_handle(), SSL_SESS_CACHE_OFF);
  return ec ? nullptr : context;
}

// A client's context: verifies servers against the CA certificates in `ca_file` (PEM), or against the system's
// store when it is empty. TLS 1.2 or newer.
inline std::shared_ptr<asio::ssl::context> tls_client_context(const std::string& ca_file, std::error_code& ec) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                       ec);
  if (!ec)
    context->set_verify_mode(asio::ssl::verify_peer, ec);
  if (!ec) {
    if (ca_file.empty())
      context->set_default_verify_paths(ec);
    else
      context->load_verify_file(ca_file, ec);
  }
  return ec ? nullptr : context;
}

namespace detail {

struct ssl_deleter {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};

// OpenSSL's reason for the last failure on this thread, a static string as close details must be; the queue is
// emptied so that the next failure does not inherit it.
inline const char* tls_failure_reason(SSL* ssl, const char* otherwise) noexcept {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (ssl && SSL_get_verify_result(ssl) != X509_V_OK)
    return X509_verify_cert_error_string(SSL_get_verify_result(ssl));
  const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
  return reason ? reason : otherwise;
}

// Moves what OpenSSL wrote for the network into `out`.
inline void drain_bio(BIO* network, std::string& out) {
  std::array<char, 16 * 1024> chunk;
  for (int n; (n = BIO_read(network, chunk.data(), static_cast<int>(chunk.size()))) > 0;)
    out.append(chunk.data(), static_cast<std::size_t>(n));
}

} // namespace detail

template <class Inner>
struct tls_codec {
  Inner inner{};
  std::shared_ptr<asio::ssl::context> context{};  // certificates, trust store, verification; none: plain TCP
  tls_role side = tls_role::server;
  std::string server_name{};  // client: SNI, and the name the server's certificate must carry (empty: no name check)
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds{10}};

  class decoder_state {
  public:
    decoder_state() = default;
    decoder_state(const decoder_state&) = delete;
    decoder_state& operator=(const decoder_state&) = delete;

    const typename Inner::decoder_state& inner() const noexcept { return inner_; }
    bool tls_established() const noexcept { return tls_done_; }
    // The protocol version and cipher agreed, once established ("TLSv1.3", "TLS_AES_256_GCM_SHA384").
    std::string_view version() const noexcept { return ssl_ && tls_done_ ? SSL_get_version(ssl_.get()) : ""; }
    std::string_view cipher() const noexcept { return ssl_ && tls_done_ ? SSL_get_cipher_name(ssl_.get()) : ""; }

  private:
    friend struct tls_codec;
    std::unique_ptr<SSL, detail::ssl_deleter> ssl_;
    BIO* from_network_ = nullptr;  // owned by ssl_: ciphertext that arrived
    BIO* to_network_ = nullptr;    // owned by ssl_: ciphertext to send
    typename Inner::decoder_state inner_{};
    std::string plaintext_;  // decrypted, from plain_used_ on not yet decoded by the inner codec
    std::size_t plain_used_ = 0;
    std::string opening_;  // the inner codec's first words (a WebSocket request), sent once TLS is up
    std::string held_;     // frames encoded before every handshake was done, sent after them
    std::string out_;      // ciphertext handed to the connection by the last call
    bool tls_done_ = false;
    bool inner_done_ = !handshaking_codec<Inner>;
    bool answer_due_ = false;  // out_ holds what OpenSSL must send, due at the next call
    bool plain_ = false;       // no context: plain TCP
    bool closed_ = false;  // close_notify sent or received: nothing more to encrypt
  };

  static constexpr bool carries_control_frames = Inner::carries_control_frames;
  static constexpr bool handshakes = true;
  static constexpr bool goaway_ends_stream = stream_ending_goaway_codec<Inner>;

  std::size_t max_frame_size() const noexcept { return inner.max_frame_size(); }

  void begin_handshake(decoder_state& s, std::string& out) const {
    if (!context) {
      s.plain_ = true;
      if constexpr (handshaking_codec<Inner>)
        inner.begin_handshake(s.inner_, out);
      return;
    }
    s.ssl_.reset(SSL_new(context->native_handle()));
    if (!s.ssl_)
      return;  // decode() refuses the handshake: there is no session
    SSL* ssl = s.ssl_.get();
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    s.from_network_ = BIO_new(BIO_s_mem());
    s.to_network_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, s.from_network_, s.to_network_);
    if constexpr (handshaking_codec<Inner>)
      inner.begin_handshake(s.inner_, s.opening_);
    if (side == tls_role::server) {
      SSL_set_accept_state(ssl);
      return;
    }
    SSL_set_connect_state(ssl);
    if (!server_name.empty()) {
      // An address is checked against the certificate's IP entries and is never sent as SNI (RFC 6066).
      std::error_code not_an_address;
      (void)asio::ip::make_address(server_name, not_an_address);
      if (!not_an_address) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl, server_name.c_str());
        SSL_set1_host(ssl, server_name.c_str());
      }
    }
    SSL_do_handshake(ssl);  // the ClientHello
    detail::drain_bio(s.to_network_, out);
  }

  decoded decode(std::string_view ciphertext, decoder_state& s) const {
    if (s.plain_)
      return decode_plain(ciphertext, s);
    if (!s.ssl_)
      return decoded::handshake_rejected({}, "OpenSSL could not create a TLS session");
    if (!s.answer_due_)
      s.out_.clear();
    if (s.plain_used_ > 0) {
      s.plaintext_.erase(0, s.plain_used_);
      s.plain_used_ = 0;
      if (s.plaintext_.empty() && s.plaintext_.capacity() > 64 * 1024)
        std::string{}.swap(s.plaintext_);
    }
    const std::size_t fed = ciphertext.size();
    if (fed > 0 && BIO_write(s.from_network_, ciphertext.data(), static_cast<int>(fed)) != static_cast<int>(fed))
      return decoded::malformed("OpenSSL could not take the bytes that arrived");
    SSL* ssl = s.ssl_.get();

    if (!s.tls_done_) {
      const int result = SSL_do_handshake(ssl);
      detail::drain_bio(s.to_network_, s.out_);
      if (result != 1) {
        const int why = SSL_get_error(ssl, result);
        if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE)
          return s.out_.empty() ? (fed > 0 ? decoded::partial(fed) : decoded::need_more()) : decoded::answer(s.out_, fed);
        return decoded::handshake_rejected(s.out_, detail::tls_failure_reason(ssl, "the TLS handshake failed"));
      }
      s.tls_done_ = true;
      release_bio_memory(s);
      if (!s.opening_.empty()) {
        encrypt(s, s.opening_);
        std::string{}.swap(s.opening_);
      }
      if (s.inner_done_) {
        flush_held(s);
        return decoded::handshake_done(s.out_, fed);
      }
    }

    if (!read_plaintext(s))
      return decoded::malformed(detail::tls_failure_reason(nullptr, "a TLS record could not be decrypted"));
    detail::drain_bio(s.to_network_, s.out_);  // what reading made OpenSSL answer (key updates, tickets)
    if (s.answer_due_) {
      s.answer_due_ = false;
      return decoded::answer(s.out_, fed);
    }
    const decoded step = inner.decode(std::string_view{s.plaintext_}, s.inner_);
    switch (step.status) {
    case decode_status::need_more:
      break;
    case decode_status::handshake:
      s.plain_used_ = step.consumed;
      s.inner_done_ = true;
      encrypt(s, step.payload);
      flush_held(s);
      return decoded::handshake_done(s.out_, fed);
    case decode_status::rejected:
      encrypt(s, step.payload);
      return decoded::handshake_rejected(s.out_, step.problem);
    case decode_status::malformed:
      return step;
    case decode_status::reply:
      s.plain_used_ = step.consumed;
      encrypt(s, step.payload);
      return decoded::answer(s.out_, fed);
    case decode_status::partial:
    case decode_status::frame:
      s.plain_used_ = step.consumed;
      // What OpenSSL has to send goes out at the next call, after this frame.
      s.answer_due_ = !s.out_.empty();
      if (step.status == decode_status::partial)
        return decoded::partial(fed);
      return decoded::frame(step.kind, step.payload, fed);
    }
    if (!s.out_.empty())
      return decoded::answer(s.out_, fed);
    return fed > 0 ? decoded::partial(fed) : decoded::need_more();
  }

  bool encode(frame_kind kind, std::string_view payload, decoder_state& s, std::string& out) const {
    if (s.plain_)
      return encode_frame(inner, kind, payload, s.inner_, out);
    if (s.closed_)
      return false;
    std::string plain;
    if (!encode_frame(inner, kind, payload, s.inner_, plain))
      return false;
    if (!s.tls_done_ || !s.inner_done_) {
      s.held_ += plain;
      return true;
    }
    return encrypt_into(s, plain, out);
  }

  bool encode_close(close_reason reason, decoder_state& s, std::string& out) const {
    if (s.plain_) {
      if constexpr (closing_frame_codec<Inner>)
        return inner.encode_close(reason, s.inner_, out);
      else
        return false;
    }
    if (!s.ssl_ || !s.tls_done_ || s.closed_)
      return false;
    if constexpr (closing_frame_codec<Inner>) {
      std::string plain;
      if (s.inner_done_ && inner.encode_close(reason, s.inner_, plain))
        encrypt_into(s, plain, out);
    } else {
      (void)reason;
    }
    s.closed_ = true;
    SSL_shutdown(s.ssl_.get());  // close_notify
    detail::drain_bio(s.to_network_, out);
    return true;
  }

private:
  // Plain TCP: the inner codec sees the bytes as they are; a codec without a handshake of its own is done at once.
  decoded decode_plain(std::string_view bytes, decoder_state& s) const {
    if (!s.inner_done_) {
      const decoded step = inner.decode(bytes, s.inner_);
      if (step.status == decode_status::handshake)
        s.inner_done_ = s.tls_done_ = true;
      return step;
    }
    if (!s.tls_done_) {
      s.tls_done_ = true;
      return decoded::handshake_done({}, 0);
    }
    return inner.decode(bytes, s.inner_);
  }

  // The handshake leaves OpenSSL's record buffers allocated (SSL_MODE_RELEASE_BUFFERS frees them after application
  // records only), and the memory BIOs with the capacity the handshake grew them to: both are let go here.
  static void release_bio_memory(decoder_state& s) {
    if (BIO_ctrl_pending(s.from_network_) != 0 || BIO_ctrl_pending(s.to_network_) != 0)
      return;
    SSL_free_buffers(s.ssl_.get());
    BIO* from_network = BIO_new(BIO_s_mem());
    BIO* to_network = BIO_new(BIO_s_mem());
    if (!from_network || !to_network) {
      BIO_free(from_network);
      BIO_free(to_network);
      return;
    }
    SSL_set_bio(s.ssl_.get(), from_network, to_network);
    s.from_network_ = from_network;
    s.to_network_ = to_network;
  }

  static bool encrypt_into(decoder_state& s, std::string_view plain, std::string& out) {
    if (plain.empty())
      return true;
    if (SSL_write(s.ssl_.get(), plain.data(), static_cast<int>(plain.size())) <= 0) {
      ERR_clear_error();
      return false;
    }
    detail::drain_bio(s.to_network_, out);
    return true;
  }

  static void encrypt(decoder_state& s, std::string_view plain) { encrypt_into(s, plain, s.out_); }

  static void flush_held(decoder_state& s) {
    encrypt(s, s.held_);
    std::string{}.swap(s.held_);
  }

  // Decrypts whatever complete records arrived; false when one fails to. A close_notify from the peer ends the
  // plaintext: its FIN follows.
  static bool read_plaintext(decoder_state& s) {
    std::array<char, 16 * 1024> chunk;
    for (;;) {
      const int n = SSL_read(s.ssl_.get(), chunk.data(), static_cast<int>(chunk.size()));
      if (n > 0) {
        s.plaintext_.append(chunk.data(), static_cast<std::size_t>(n));
        continue;
      }
      const int why = SSL_get_error(s.ssl_.get(), n);
      if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE)
        return true;
      if (why == SSL_ERROR_ZERO_RETURN) {
        s.closed_ = true;
        return true;
      }
      return false;
    }
  }
};

} // namespace tether
