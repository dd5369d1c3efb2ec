# Install rules: headers, the exported target, a relocatable config, an architecture-independent
# version file and a pkg-config file.
include(CMakePackageConfigHelpers)

set(TETHER_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/cmake/tether")

install(TARGETS tether EXPORT tetherTargets)
if(TARGET tether_tls)
  install(TARGETS tether_tls EXPORT tetherTlsTargets)
  install(EXPORT tetherTlsTargets NAMESPACE tether:: DESTINATION "${TETHER_CMAKE_INSTALL_DIR}")
  export(EXPORT tetherTlsTargets NAMESPACE tether:: FILE "${PROJECT_BINARY_DIR}/tetherTlsTargets.cmake")
endif()
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/tether" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT tetherTargets NAMESPACE tether:: DESTINATION "${TETHER_CMAKE_INSTALL_DIR}")
export(EXPORT tetherTargets NAMESPACE tether:: FILE "${PROJECT_BINARY_DIR}/tetherTargets.cmake")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/tetherConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/tetherConfig.cmake"
  INSTALL_DESTINATION "${TETHER_CMAKE_INSTALL_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES
  "${PROJECT_BINARY_DIR}/tetherConfig.cmake"
  "${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/Findasio.cmake"
  DESTINATION "${TETHER_CMAKE_INSTALL_DIR}")

if(TETHER_FMT_HEADER_ONLY)
  set(TETHER_PC_FMT_CFLAGS " -DFMT_HEADER_ONLY")
  set(TETHER_PC_FMT_LIBS "")
else()
  set(TETHER_PC_FMT_CFLAGS "")
  set(TETHER_PC_FMT_LIBS " fmt")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/tether.pc.in" "${PROJECT_BINARY_DIR}/tether.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/tether.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
