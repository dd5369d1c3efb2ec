# Asio's io_uring backend for tether's own executables (examples, benchmarks): Asio then runs its sockets,
# timers and waits on io_uring instead of epoll. Every translation unit of a program must agree, so it is set
# per executable, never on the tether INTERFACE target that users link.
option(TETHER_IO_URING "Build the examples and benchmarks on Asio's io_uring backend (Linux, liburing)" OFF)

if(TETHER_IO_URING)
  find_library(TETHER_LIBURING uring)
  find_path(TETHER_LIBURING_INCLUDE liburing.h)
  if(NOT TETHER_LIBURING OR NOT TETHER_LIBURING_INCLUDE)
    message(FATAL_ERROR "TETHER_IO_URING needs liburing (Debian: liburing-dev; scripts/install-deps installs it)")
  endif()
endif()

function(tether_use_io_uring_if_asked target)
  if(TETHER_IO_URING)
    target_compile_definitions(${target} PRIVATE ASIO_HAS_IO_URING ASIO_DISABLE_EPOLL)
    target_include_directories(${target} PRIVATE ${TETHER_LIBURING_INCLUDE})
    target_link_libraries(${target} PRIVATE ${TETHER_LIBURING})
  endif()
endfunction()
