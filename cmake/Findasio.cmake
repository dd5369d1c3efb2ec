# Findasio: standalone Asio as the INTERFACE target asio::asio (with ASIO_STANDALONE).
# Debian's libasio-dev ships headers only, no CMake config, so this module finds the headers and
# reads the version from asio/version.hpp. A config package (vcpkg, Conan) is preferred when present.
if(TARGET asio::asio)
  set(asio_FOUND TRUE)
  return()
endif()

find_package(asio CONFIG QUIET)
if(asio_FOUND AND TARGET asio::asio)
  return()
endif()

find_path(asio_INCLUDE_DIR NAMES asio.hpp PATH_SUFFIXES include)
if(asio_INCLUDE_DIR AND EXISTS "${asio_INCLUDE_DIR}/asio/version.hpp")
  file(STRINGS "${asio_INCLUDE_DIR}/asio/version.hpp" asio_version_line REGEX "#define ASIO_VERSION ")
  string(REGEX MATCH "[0-9]+" asio_version_number "${asio_version_line}")
  math(EXPR asio_version_major "${asio_version_number} / 100000")
  math(EXPR asio_version_minor "${asio_version_number} / 100 % 1000")
  math(EXPR asio_version_patch "${asio_version_number} % 100")
  set(asio_VERSION "${asio_version_major}.${asio_version_minor}.${asio_version_patch}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(asio REQUIRED_VARS asio_INCLUDE_DIR VERSION_VAR asio_VERSION)

if(asio_FOUND AND NOT TARGET asio::asio)
  find_package(Threads REQUIRED)
  add_library(asio::asio INTERFACE IMPORTED)
  set_target_properties(asio::asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${asio_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE"
    INTERFACE_LINK_LIBRARIES "Threads::Threads")
  if(WIN32)
    set_property(TARGET asio::asio APPEND PROPERTY INTERFACE_LINK_LIBRARIES ws2_32 mswsock)
  endif()
endif()
mark_as_advanced(asio_INCLUDE_DIR)
