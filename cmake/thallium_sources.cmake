# The Thallium engine (included by engines.cmake once find_package(thallium) succeeded).
# Mochi comes from Spack or a hand install (e.g. `source /opt/mochi/env.sh`); it is never
# vendored here.

# reverie_add_core() and reverie_add_module() (engines.cmake) add these to each target.
set(REVERIE_THALLIUM_SOURCES
  ${PROJECT_SOURCE_DIR}/cpp/transport/thallium/sample_provider.cc
  ${PROJECT_SOURCE_DIR}/cpp/transport/thallium/stale_sm.cc
  ${PROJECT_SOURCE_DIR}/cpp/transport/thallium/thallium_transport.cc)

# Where the Mochi shared libraries live (margo, mercury, argobots: thallium is header-only),
# so `import reverie._core` works without LD_LIBRARY_PATH.
set(_reverie_mochi_rpath "")
foreach(_dir IN LISTS margo_LIBRARY_DIRS)
  list(APPEND _reverie_mochi_rpath "${_dir}")
endforeach()
foreach(_lib IN ITEMS margo abt mercury na)
  find_library(_reverie_mochi_${_lib} NAMES ${_lib} HINTS ${margo_LIBRARY_DIRS})
  if(_reverie_mochi_${_lib})
    get_filename_component(_dir "${_reverie_mochi_${_lib}}" DIRECTORY)
    list(APPEND _reverie_mochi_rpath "${_dir}")
  endif()
endforeach()
list(REMOVE_DUPLICATES _reverie_mochi_rpath)
list(FILTER _reverie_mochi_rpath EXCLUDE REGEX "^(/usr)?/lib(64|/x86_64-linux-gnu)?$")
set(REVERIE_THALLIUM_RPATH "${_reverie_mochi_rpath}" CACHE INTERNAL "Run-time search path of the Mochi libraries")
message(STATUS "Reverie thallium engine: Mochi libraries in ${REVERIE_THALLIUM_RPATH}")

# benchmarks/thallium_fetch.py's bare baseline (one RPC + one bulk push), installed beside
# the module so the benchmark finds it in any install.
add_executable(reverie_thallium_bare ${CMAKE_CURRENT_LIST_DIR}/../benchmarks/thallium_bare.cc)
target_link_libraries(reverie_thallium_bare PRIVATE thallium)
set_target_properties(reverie_thallium_bare PROPERTIES OUTPUT_NAME thallium_bare
  BUILD_RPATH "${REVERIE_THALLIUM_RPATH}" INSTALL_RPATH "${REVERIE_THALLIUM_RPATH}")
if(REVERIE_BUILD_PYTHON)
  install(TARGETS reverie_thallium_bare RUNTIME DESTINATION reverie/_bench)
endif()
