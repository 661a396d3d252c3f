# Detects the transport engines (AUTO builds an engine when its dependency is found, ON fails
# the configure step without it, OFF skips it) and defines reverie_add_core() and
# reverie_add_module(), which build the core library and the extension with them.

set(REVERIE_HAVE_MPI OFF)
# The MPI of the environment Reverie installs into comes first: the mpich wheel puts mpicc
# beside the venv's python, and mpi4py in that venv runs against it, even when the venv is
# not activated (its bin/ then is not on PATH). scikit-build-core passes Python_EXECUTABLE
# (sys.executable, symlinks unresolved). MPI_C_COMPILER or MPI_HOME given by the user win.
if(NOT REVERIE_MPI STREQUAL "OFF" AND NOT MPI_C_COMPILER AND NOT DEFINED ENV{MPI_HOME} AND Python_EXECUTABLE)
  get_filename_component(_reverie_python_bin "${Python_EXECUTABLE}" DIRECTORY)
  if(EXISTS "${_reverie_python_bin}/mpicc")
    set(MPI_C_COMPILER "${_reverie_python_bin}/mpicc" CACHE FILEPATH "MPI C compiler wrapper beside the Python built for")
  endif()
endif()
if(NOT REVERIE_MPI STREQUAL "OFF")
  if(REVERIE_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS C)
  else()
    find_package(MPI COMPONENTS C QUIET)
  endif()
  if(MPI_C_FOUND)
    set(REVERIE_HAVE_MPI ON)
    if(REVERIE_MPI_OPTIONAL)
      # This MPI lives in pip's build environment, deleted after the build: keep no run-time
      # path into it (anyone recreating that /tmp path could plant a libmpi there).
      get_target_property(_reverie_mpi_link MPI::MPI_C INTERFACE_LINK_OPTIONS)
      if(_reverie_mpi_link)
        # FindMPI writes "-Wl$<COMMA>-rpath -Wl$<COMMA>DIR" (or with plain commas).
        string(REGEX REPLACE "-Wl(,|\\$<COMMA>)-rpath( -Wl)?(,|\\$<COMMA>)[^ ;>]+" "" _reverie_mpi_link "${_reverie_mpi_link}")
        set_target_properties(MPI::MPI_C PROPERTIES INTERFACE_LINK_OPTIONS "${_reverie_mpi_link}")
        message(STATUS "Reverie MPI engine is optional at run time; link options: ${_reverie_mpi_link}")
      endif()
    endif()
    message(STATUS "Reverie MPI engine: ${MPI_C_COMPILER} (MPI ${MPI_C_VERSION})")
  else()
    # Loud: a build without the engine installs fine, and engine="mpi" fails only at run time.
    message(WARNING "Reverie is built WITHOUT the MPI engine: no MPI found (no mpicc beside "
                    "${Python_EXECUTABLE} nor on PATH, no MPI_HOME). Install an MPI (pip install mpich, or "
                    "your site's MPI module), then reinstall Reverie; REVERIE_MPI=ON pip install . makes a "
                    "missing MPI an error.")
  endif()
endif()

set(REVERIE_HAVE_THALLIUM OFF)
if(NOT REVERIE_THALLIUM STREQUAL "OFF")
  if(REVERIE_THALLIUM STREQUAL "ON")
    find_package(thallium REQUIRED)
  else()
    find_package(thallium QUIET)
  endif()
  if(thallium_FOUND)
    set(REVERIE_HAVE_THALLIUM ON)
    include(${CMAKE_CURRENT_LIST_DIR}/thallium_sources.cmake OPTIONAL)
  else()
    message(STATUS "Reverie: no Thallium found, building without the Thallium engine (see docs/hpc.md)")
  endif()
endif()

set(REVERIE_MPI_SOURCES
  ${PROJECT_SOURCE_DIR}/cpp/transport/mpi/mpi_transport.cc
  ${PROJECT_SOURCE_DIR}/cpp/transport/mpi/mpi_fetch.cc
  ${PROJECT_SOURCE_DIR}/cpp/transport/mpi/mpi_server.cc
  ${PROJECT_SOURCE_DIR}/cpp/transport/mpi/shm_protocol.cc)

# The core library with the engines found; with_mpi OFF leaves the MPI engine out.
function(reverie_add_core target with_mpi)
  add_library(${target} STATIC ${REVERIE_CORE_SOURCES})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/cpp)
  target_link_libraries(${target} PUBLIC Threads::Threads)
  if(with_mpi)
    target_sources(${target} PRIVATE ${REVERIE_MPI_SOURCES})
    target_link_libraries(${target} PUBLIC MPI::MPI_C)
    target_compile_definitions(${target} PUBLIC REVERIE_HAVE_MPI=1)
  endif()
  if(REVERIE_HAVE_THALLIUM)
    target_sources(${target} PRIVATE ${REVERIE_THALLIUM_SOURCES})
    target_link_libraries(${target} PUBLIC thallium)
    target_compile_definitions(${target} PUBLIC REVERIE_HAVE_THALLIUM=1)
  endif()
endfunction()

# The Python extension reverie.<name> over the core library `core`.
function(reverie_add_module name core)
  pybind11_add_module(${name}
    ${PROJECT_SOURCE_DIR}/cpp/bindings/module.cc
    ${PROJECT_SOURCE_DIR}/cpp/bindings/bind_buffer.cc
    ${PROJECT_SOURCE_DIR}/cpp/bindings/bind_engine.cc)
  target_compile_definitions(${name} PRIVATE REVERIE_MODULE_NAME=${name})
  target_link_libraries(${name} PRIVATE ${core})
  if(REVERIE_HAVE_THALLIUM)
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/bindings/bind_thallium.cc)
    set_property(TARGET ${name} APPEND PROPERTY BUILD_RPATH ${REVERIE_THALLIUM_RPATH})
    set_property(TARGET ${name} APPEND PROPERTY INSTALL_RPATH ${REVERIE_THALLIUM_RPATH})
  endif()
  install(TARGETS ${name} LIBRARY DESTINATION reverie)
endfunction()
