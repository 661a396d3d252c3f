# Detects the transport engines. AUTO builds an engine when its dependency is found,
# ON fails the configure step without it, OFF skips it.

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
    target_sources(reverie_core PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cpp/transport/mpi/mpi_transport.cc
                                        ${CMAKE_CURRENT_SOURCE_DIR}/cpp/transport/mpi/mpi_fetch.cc
                                        ${CMAKE_CURRENT_SOURCE_DIR}/cpp/transport/mpi/mpi_server.cc
                                        ${CMAKE_CURRENT_SOURCE_DIR}/cpp/transport/mpi/shm_protocol.cc)
    target_link_libraries(reverie_core PUBLIC MPI::MPI_C)
    target_compile_definitions(reverie_core PUBLIC REVERIE_HAVE_MPI=1)
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
