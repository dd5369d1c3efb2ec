# Installs the build tree into a fresh prefix and forgets earlier consumer builds, so every run checks
# what an install produces now rather than what a cache remembers.
file(REMOVE_RECURSE ${PREFIX} ${CONSUMER_BUILD_ROOT}/find_package ${CONSUMER_BUILD_ROOT}/add_subdirectory
     ${CONSUMER_BUILD_ROOT}/pkg_config)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${result}")
endif()
