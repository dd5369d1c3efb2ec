# Finds tether's dependencies; shared by the build tree and the installed package config.
include(CMakeFindDependencyMacro)
include(GNUInstallDirs)

find_package(Threads REQUIRED)
find_package(asio 1.22 REQUIRED MODULE)
find_package(fmt 9 REQUIRED CONFIG)

if(TETHER_FMT_HEADER_ONLY)
  set(TETHER_FMT_TARGET fmt::fmt-header-only)
else()
  set(TETHER_FMT_TARGET fmt::fmt)
endif()
