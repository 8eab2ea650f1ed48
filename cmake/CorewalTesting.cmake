# Helpers that add C and C++ tests of corewal to ctest.
#
#   corewal_add_c_test(<name> <source>... [LANG C|CXX] [STATIC]
#                      [TIMEOUT <seconds>] [LABELS <label>...])
#       Builds executable <name> from the sources with warnings as errors
#       (-Wall -Wextra -pedantic -Werror; plus ASan and UBSan in Debug when
#       COREWAL_SANITIZE is on), links corewal::corewal (or, with STATIC,
#       corewal::corewal_static) and registers it as ctest case <name>.
#       LANG picks the standard: C11 (default) or C++17.
#
#   corewal_add_header_check(<name> <source> LANG C|CXX STANDARD <std>)
#       Compiles <source> (a file that includes only a corewal header) as an
#       object library outside `all`; ctest case <name> builds it, so a header
#       that does not stand alone in that language fails in ctest by name.
#
#   corewal_target_warnings(<target>)
#       The warning and sanitizer flags above, for any target.

include_guard(GLOBAL)

set(COREWAL_WARNING_FLAGS -Wall -Wextra -pedantic -Werror)
set(COREWAL_SANITIZER_FLAGS
  -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

function(corewal_target_warnings target)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "GNU|Clang" AND NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(WARNING "corewal tests: unknown compiler; building ${target} without -Werror")
    return()
  endif()
  target_compile_options(${target} PRIVATE ${COREWAL_WARNING_FLAGS})
  if(COREWAL_SANITIZE)
    # Only the C/C++ code is instrumented; the Rust library is the plain
    # release build (its allocations still go through the interposed malloc).
    target_compile_options(${target} PRIVATE
      "$<$<CONFIG:Debug>:${COREWAL_SANITIZER_FLAGS}>")
    target_link_options(${target} PRIVATE
      "$<$<CONFIG:Debug>:${COREWAL_SANITIZER_FLAGS}>")
  endif()
endfunction()

function(_corewal_set_standard target lang)
  if(lang STREQUAL "C")
    set_target_properties(${target} PROPERTIES
      C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  elseif(lang STREQUAL "CXX")
    set_target_properties(${target} PROPERTIES
      CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  else()
    message(FATAL_ERROR "LANG must be C or CXX, not '${lang}'")
  endif()
endfunction()

function(corewal_add_c_test name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "STATIC;ONE_BACKEND" "LANG;TIMEOUT" "LABELS")
  set(sources ${ARG_UNPARSED_ARGUMENTS})
  if(NOT sources)
    message(FATAL_ERROR "corewal_add_c_test(${name}): no sources")
  endif()
  if(NOT ARG_LANG)
    set(ARG_LANG C)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()

  add_executable(${name} ${sources})
  _corewal_set_standard(${name} ${ARG_LANG})
  corewal_target_warnings(${name})
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/c-tests")
  if(ARG_STATIC)
    target_link_libraries(${name} PRIVATE corewal::corewal_static Threads::Threads)
  else()
    target_link_libraries(${name} PRIVATE corewal::corewal Threads::Threads)
  endif()

  string(TOLOWER "${ARG_LANG}" lang_label)
  set(labels ${lang_label} ${ARG_LABELS})
  if(ARG_STATIC)
    list(APPEND labels static)
  endif()
  # Every test runs on both backends, each in three ways of writing
  # segments (the harness reads COREWAL_TEST_BACKEND and
  # COREWAL_TEST_DIRECT): <name> on sync and <name>_io_uring with the
  # defaults (direct writes before syncs), <name>_buffered and
  # <name>_io_uring_buffered through the page cache only (direct_sync 0),
  # <name>_direct and <name>_io_uring_direct with every write direct
  # (direct_io).
  set(runs "${name}=sync=default")
  if(NOT ARG_ONE_BACKEND)
    list(APPEND runs "${name}_io_uring=io_uring=default"
      "${name}_buffered=sync=off" "${name}_io_uring_buffered=io_uring=off"
      "${name}_direct=sync=every" "${name}_io_uring_direct=io_uring=every")
  endif()
  foreach(run IN LISTS runs)
    string(REPLACE "=" ";" run "${run}")
    list(GET run 0 test_name)
    list(GET run 1 backend)
    list(GET run 2 direct)
    set(run_labels "${labels};${backend}")
    if(direct STREQUAL "every")
      list(APPEND run_labels direct)
    elseif(direct STREQUAL "off")
      list(APPEND run_labels buffered)
    endif()
    add_test(NAME ${test_name} COMMAND ${name})
    set_tests_properties(${test_name} PROPERTIES
      TIMEOUT ${ARG_TIMEOUT}
      LABELS "${run_labels}"
      ENVIRONMENT "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;COREWAL_TEST_BACKEND=${backend};COREWAL_TEST_DIRECT=${direct}")
  endforeach()
endfunction()

function(corewal_add_header_check name source)
  cmake_parse_arguments(PARSE_ARGV 2 ARG "" "LANG;STANDARD" "")
  if(NOT ARG_LANG OR NOT ARG_STANDARD)
    message(FATAL_ERROR "corewal_add_header_check(${name}): LANG and STANDARD are required")
  endif()
  set(target corewal_${name})
  add_library(${target} OBJECT EXCLUDE_FROM_ALL "${source}")
  set_target_properties(${target} PROPERTIES
    ${ARG_LANG}_STANDARD ${ARG_STANDARD}
    ${ARG_LANG}_STANDARD_REQUIRED ON
    ${ARG_LANG}_EXTENSIONS OFF)
  # Only the include directory: no dependency on the cargo build, so ctest
  # can build these while other tests run.
  target_include_directories(${target} PRIVATE "${PROJECT_SOURCE_DIR}/include")
  target_compile_options(${target} PRIVATE ${COREWAL_WARNING_FLAGS})
  if(ARG_LANG STREQUAL "C")
    target_compile_options(${target} PRIVATE -Wstrict-prototypes -Wmissing-prototypes)
  endif()
  add_test(NAME ${name}
    COMMAND "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target ${target} --config $<CONFIG>)
  # One at a time: concurrent `cmake --build` runs in one tree could race if
  # the build system needs regenerating.
  set_tests_properties(${name} PROPERTIES
    TIMEOUT 120 LABELS "header" RESOURCE_LOCK corewal_build_tree)
endfunction()
