# Strict warnings for tether's own targets (tests, examples, benchmarks); never put on the INTERFACE target.
option(TETHER_WERROR "Treat warnings as errors in tether's own targets" ON)

function(tether_enable_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${TETHER_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic $<$<BOOL:${TETHER_WERROR}>:-Werror>)
  endif()
endfunction()
