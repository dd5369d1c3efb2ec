// UTF-8 validation (RFC 3629) for WebSocket text messages: rejects overlong forms, surrogates and code points
// above U+10FFFF. It can resume in the middle of a character, so fragmented messages are checked as they arrive.
#pragma once

#include <tether/detail/config.hpp>

#include <cstdint>
#include <string_view>

namespace tether::detail {

class utf8_validator {
public:
  // False as soon as the bytes so far cannot begin valid UTF-8.
  bool feed(std::string_view bytes) noexcept {
    for (const char c : bytes) {
      const auto byte = static_cast<std::uint8_t>(c);
      if (needed_ == 0) {
        if (byte < 0x80)
          continue;
        if (byte >= 0xC2 && byte <= 0xDF) {
          needed_ = 1;
          low_ = 0x80, high_ = 0xBF;
        } else if (byte >= 0xE0 && byte <= 0xEF) {
          needed_ = 2;
          low_ = byte == 0xE0 ? 0xA0 : 0x80;   // no overlong three-byte forms
          high_ = byte == 0xED ? 0x9F : 0xBF;  // no UTF-16 surrogates
        } else if (byte >= 0xF0 && byte <= 0xF4) {
          needed_ = 3;
          low_ = byte == 0xF0 ? 0x90 : 0x80;   // no overlong four-byte forms
          high_ = byte == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
        } else {
          return false;
        }
        continue;
      }
      if (byte < low_ || byte > high_)
        return false;
      low_ = 0x80, high_ = 0xBF;
      --needed_;
    }
    return true;
  }

  // True when the bytes fed so far end on a character boundary.
  bool complete() const noexcept { return needed_ == 0; }

  void reset() noexcept { needed_ = 0; }

private:
  std::uint8_t needed_ = 0;  // continuation bytes still due
  std::uint8_t low_ = 0x80;  // the range the next continuation byte must fall in
  std::uint8_t high_ = 0xBF;
};

inline bool valid_utf8(std::string_view text) noexcept {
  utf8_validator validator;
  return validator.feed(text) && validator.complete();
}

} // namespace tether::detail
