# Overlay port built from this repository's tree (vcpkg install tether --overlay-ports=packaging/vcpkg).
# A registry port would fetch a release instead:
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO tether-cpp/tether REF "v${VERSION}" SHA512 <release sha>)
set(VCPKG_BUILD_TYPE release) # header-only
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DTETHER_BUILD_TESTS=OFF
    -DTETHER_BUILD_EXAMPLES=OFF
    -DTETHER_BUILD_BENCHMARKS=OFF
    -DTETHER_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/tether)
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
