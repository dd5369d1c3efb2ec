// This process's own resources, for tests that check a load leaves nothing behind: open descriptors, heap in use
// (glibc's mallinfo2: what is allocated, not what the allocator keeps) and resident memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <malloc.h>

namespace tether::test {

inline std::size_t open_descriptors() {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator{"/proc/self/fd"},
                                                std::filesystem::directory_iterator{}));
}

inline std::size_t heap_in_use() {
  const auto info = ::mallinfo2();
  return info.uordblks + info.hblkhd;
}

inline std::size_t resident_bytes() {
  std::ifstream status{"/proc/self/status"};
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:"))
      return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

} // namespace tether::test
