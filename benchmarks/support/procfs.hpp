// Readings from /proc and from the allocator: what memory and CPU the kernel and each process account for.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>

#include <malloc.h>
#include <sys/types.h>
#include <unistd.h>

namespace bench {

// /proc/meminfo in bytes, by field name ("Slab", "SUnreclaim", "MemAvailable", ...).
inline std::map<std::string, std::int64_t> read_meminfo() {
  std::map<std::string, std::int64_t> fields;
  std::ifstream file{"/proc/meminfo"};
  std::string name;
  std::int64_t kib = 0;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words{line};
    if (words >> name >> kib) {
      name.pop_back();  // the ':'
      fields[name] = kib * 1024;
    }
  }
  return fields;
}

// The TCP lines of /proc/net/sockstat; `memory` is TCP's buffer memory, which sockstat counts in pages.
struct sockstat {
  std::int64_t sockets_used = 0;
  std::int64_t tcp_in_use = 0;
  std::int64_t tcp_orphan = 0;
  std::int64_t tcp_time_wait = 0;
  std::int64_t tcp_allocated = 0;
  std::int64_t tcp_memory_bytes = 0;
};

inline sockstat read_sockstat() {
  sockstat result;
  std::ifstream file{"/proc/net/sockstat"};
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words{line};
    std::string section;
    words >> section;
    std::string key;
    std::int64_t value = 0;
    while (words >> key >> value) {
      if (section == "sockets:" && key == "used")
        result.sockets_used = value;
      if (section != "TCP:")
        continue;
      if (key == "inuse")
        result.tcp_in_use = value;
      else if (key == "orphan")
        result.tcp_orphan = value;
      else if (key == "tw")
        result.tcp_time_wait = value;
      else if (key == "alloc")
        result.tcp_allocated = value;
      else if (key == "mem")
        result.tcp_memory_bytes = value * ::sysconf(_SC_PAGESIZE);
    }
  }
  return result;
}

// Bytes held by one slab cache (active objects times object size), or 0 where slabinfo is unreadable (not
// root) or the cache does not exist under that name.
inline std::int64_t slab_cache_bytes(const std::string& cache) {
  std::ifstream file{"/proc/slabinfo"};
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words{line};
    std::string name;
    std::int64_t active = 0;
    std::int64_t total = 0;
    std::int64_t object_size = 0;
    if (words >> name >> active >> total >> object_size && name == cache)
      return active * object_size;
  }
  return 0;
}

// Resident set size of a process, in bytes; 0 once it is gone.
inline std::int64_t resident_bytes(pid_t pid) {
  std::ifstream file{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(file, line)) {
    if (line.starts_with("VmRSS:"))
      return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// Time the live threads of a process have spent on a CPU, in nanoseconds (schedstat, not the 100 Hz tick
// counts): a JVM or Go runtime serves from several threads.
inline std::chrono::nanoseconds cpu_time(pid_t pid) {
  std::int64_t total = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator task{"/proc/" + std::to_string(pid) + "/task", ec}, end;
       !ec && task != end; task.increment(ec)) {
    std::ifstream file{task->path() / "schedstat"};
    std::int64_t on_cpu = 0;
    if (file >> on_cpu)
      total += on_cpu;
  }
  return std::chrono::nanoseconds{total};
}

// Bytes this process has allocated and not freed (small blocks plus mmapped large ones).
inline std::int64_t heap_in_use() {
  const struct mallinfo2 info = ::mallinfo2();
  return static_cast<std::int64_t>(info.uordblks + info.hblkhd);
}

// Only root may; without it the kernel's figures include whatever page cache happens to come and go.
inline bool drop_caches() {
  ::sync();
  std::ofstream file{"/proc/sys/vm/drop_caches"};
  file << "3\n";
  return static_cast<bool>(file.flush());
}

} // namespace bench
