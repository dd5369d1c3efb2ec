// libFuzzer target for the codecs: whatever a peer sends, decoding must stay inside the buffer, make
// progress, respect the configured limit, deliver the same frames however the network splits the stream,
// and deliver only frames that encode back to themselves.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I include tests/fuzz/codec_fuzzer.cpp -o fuzzer
//   mkdir -p findings && ./fuzzer -max_total_time=60 findings tests/fuzz/corpus/codec
//
// libFuzzer adds the inputs it finds to the first directory, which keeps the checked-in seeds unchanged.
//
// The first input byte picks the codec (value % 3: line, length-prefixed, raw) and a small limit
// (value / 3, so 0 to 85), small enough that the fuzzer reaches the oversize paths; the rest is the stream.
#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "codec invariant violated: %s\n", invariant);
    std::abort();
  }
}

struct frame {
  tether::frame_kind kind;
  std::string payload;
  bool operator==(const frame&) const = default;
};

struct stream_outcome {
  std::vector<frame> frames;
  bool malformed = false;
  bool operator==(const stream_outcome&) const = default;
};

// Chunk lengths for one way of splitting the stream, derived from the input so a crash reproduces from it.
class chunk_lengths {
public:
  explicit chunk_lengths(std::uint32_t seed) noexcept : state_{seed | 1} {}

  std::size_t next() noexcept {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return 1 + state_ % 97;
  }

private:
  std::uint32_t state_;
};

template <tether::codec Codec>
void check_frame(const Codec& codec, std::string_view buffered, const tether::decoded& step) {
  require(step.consumed > 0, "a frame consumes input");
  require(step.consumed <= buffered.size(), "a frame consumes only buffered bytes");
  const std::less_equal<const char*> not_after;
  require(not_after(buffered.data(), step.payload.data()) &&
              not_after(step.payload.data() + step.payload.size(), buffered.data() + step.consumed),
          "the payload lies inside the bytes the frame consumed");
  require(step.payload.size() <= codec.max_frame_size(), "the payload respects the limit");
  require(Codec::carries_control_frames || step.kind == tether::frame_kind::data,
          "a codec without control frames yields only data");

  constexpr std::string_view earlier_output = "earlier output";
  std::string out{earlier_output};
  require(codec.encode(step.kind, step.payload, out), "a decoded frame can be encoded again");
  require(std::string_view{out}.starts_with(earlier_output), "encode appends");
  const std::string_view wire = std::string_view{out}.substr(earlier_output.size());
  typename Codec::decoder_state fresh_state;
  const tether::decoded again = codec.decode(wire, fresh_state);
  require(again.status == tether::decode_status::frame && again.consumed == wire.size(),
          "an encoded frame decodes as exactly one frame");
  require(again.kind == step.kind && again.payload == step.payload, "an encoded frame decodes to itself");
}

// Reads `stream` the way a connection does: append what arrived, decode until need_more, erase what was used.
template <tether::codec Codec, std::invocable NextChunkLength>
stream_outcome decode_stream(const Codec& codec, std::string_view stream, NextChunkLength next_chunk_length) {
  stream_outcome outcome;
  std::string buffer;
  typename Codec::decoder_state state;
  for (std::size_t offset = 0; offset < stream.size();) {
    const std::size_t length = next_chunk_length();
    buffer.append(stream.substr(offset, length));
    offset += length;
    for (;;) {
      const tether::decoded step = codec.decode(buffer, state);
      if (step.status == tether::decode_status::need_more)
        break;
      if (step.status == tether::decode_status::malformed) {
        require(!step.problem.empty(), "a malformed input is explained");
        outcome.malformed = true;
        return outcome;
      }
      check_frame(codec, buffer, step);
      outcome.frames.push_back({step.kind, std::string{step.payload}});
      buffer.erase(0, step.consumed);
    }
  }
  return outcome;
}

std::string concatenated_payloads(const stream_outcome& outcome) {
  std::string bytes;
  for (const frame& each : outcome.frames)
    bytes += each.payload;
  return bytes;
}

template <tether::codec Codec>
void fuzz(const Codec& codec, std::string_view stream, std::uint32_t seed) {
  chunk_lengths random_lengths{seed};
  const stream_outcome at_once = decode_stream(codec, stream, [&] { return stream.size(); });
  const stream_outcome byte_by_byte = decode_stream(codec, stream, [] { return std::size_t{1}; });
  const stream_outcome in_random_chunks = decode_stream(codec, stream, [&] { return random_lengths.next(); });
  if constexpr (std::same_as<Codec, tether::raw_codec>) {
    // Raw frames end wherever the reads ended; only the bytes themselves must agree.
    require(at_once.malformed == byte_by_byte.malformed && at_once.malformed == in_random_chunks.malformed,
            "a raw stream is malformed however it is split");
    if (!at_once.malformed) {
      require(concatenated_payloads(at_once) == stream && concatenated_payloads(byte_by_byte) == stream &&
                  concatenated_payloads(in_random_chunks) == stream,
              "a raw codec delivers every byte once, in order");
    }
  } else {
    require(at_once == byte_by_byte && at_once == in_random_chunks,
            "the frames do not depend on how the stream is split");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::uint8_t selector = data[0];
  const std::size_t limit = selector / 3;
  const std::string_view stream{reinterpret_cast<const char*>(data + 1), size - 1};
  const auto seed = static_cast<std::uint32_t>(selector) << 16 ^ static_cast<std::uint32_t>(size);
  switch (selector % 3) {
  case 0:
    fuzz(tether::line_codec{.max_line_length = limit}, stream, seed);
    break;
  case 1:
    fuzz(tether::length_prefixed_codec{.max_payload_size = limit}, stream, seed);
    break;
  default:
    fuzz(tether::raw_codec{.max_payload_size = limit}, stream, seed);
    break;
  }
  return 0;
}
