# Spack package for Reverie: distributed rehearsal buffers for data-parallel
# continual learning with PyTorch.
#
# Install:
#   spack repo add <reverie-checkout>/spack
#   spack install py-reverie+thallium+mpi            # CPU
#   spack install py-reverie+thallium+mpi+cuda       # GPU (py-torch+cuda)
#
# Build from a local checkout instead of the git URL:
#   cd <reverie-checkout>
#   spack dev-build py-reverie@main+thallium+mpi     # one-shot build of "."
# or, inside a Spack environment (see ../../spack.yaml):
#   spack develop --path <reverie-checkout> py-reverie@main
#   spack concretize -f && spack install
#
# Minimum Spack: 0.23, the first release whose builtin py-scikit-build-core has @0.10:
# (below). Spack 0.22's stops at 0.6.1, and so did a 0.23.0.dev0 snapshot of June 2024; the
# builtin recipe carries 0.10.7 in a late-2024 snapshot (2013-2024 header, with the generated
# c/cxx dependencies that arrived for 0.23) and in a 0.24.0.dev0 one of 2025. Spack 1.x
# (spack/spack-packages) has it; 1.1.0 was run (docs/hpc.md), 0.23 was not (no Spack 0.23
# here). With an older Spack, add `version("0.10.7", ...)` to py-scikit-build-core in an
# overlay repository (docs/hpc.md).
#
# SPDX-License-Identifier: Apache-2.0
#
# Spack recipes use the star import of spack.package by design.
# ruff: noqa: F403, F405

import spack
from spack.package import *

try:
    # Spack >= 1.0: build systems live in the builtin package repository
    # (spack/spack-packages), no longer in spack.package.
    from spack_repo.builtin.build_systems.python import PythonPackage
except ImportError:  # Spack 0.2x: PythonPackage comes from spack.package
    pass


class PyReverie(PythonPackage):
    """Distributed rehearsal buffers for data-parallel continual learning with
    PyTorch. A C++17 core (pybind11 extension ``reverie._core``) with optional
    MPI and Thallium (Mochi) transport engines."""

    homepage = "https://github.com/reverie-hpc/reverie"
    git = "https://github.com/reverie-hpc/reverie.git"

    license("Apache-2.0")

    version("main", branch="main")

    # --- variants --------------------------------------------------------
    # Each engine variant maps to the CMake option of the same name
    # (REVERIE_<NAME>, AUTO|ON|OFF in CMakeLists.txt). Spack always passes an
    # explicit ON/OFF so the build never silently picks up (or misses) an MPI
    # or Mercury from the environment; tests/packaging/test_spack_package.py
    # checks that this mapping stays in sync with CMakeLists.txt.
    variant("mpi", default=True, description="Build the MPI transport engine")
    variant(
        "thallium",
        default=False,
        description="Build the Thallium (Mochi/Mercury RPC+RDMA) transport engine",
    )
    # +cuda has no CMake option on purpose: the C++ core never links CUDA (nor
    # libtorch). GPU tensors are staged by PyTorch on the Python side, so CUDA
    # support is entirely a property of the py-torch the buffer runs with.
    # The variant only exists to pull in py-torch+cuda, so that
    # "spack install py-reverie+cuda ^py-torch cuda_arch=80" gives a usable
    # GPU stack in one spec.
    variant("cuda", default=False, description="Require a CUDA-enabled py-torch")

    # --- build requirements (pyproject.toml [build-system].requires) -------
    # Spack >= 1.0 models compilers as dependencies on the "c"/"cxx" virtuals
    # and gives a package no compiler unless it asks for one. Spack 0.2x has
    # no such virtuals (the compiler is a node attribute), so only declare
    # them where they exist.
    if spack.spack_version_info[0] >= 1:
        depends_on("c", type="build")
        depends_on("cxx", type="build")
    # Version floors mirror pyproject.toml (requires-python,
    # [build-system].requires, tool.scikit-build cmake.version);
    # tests/packaging/test_spack_package.py fails when they drift apart.
    depends_on("python@3.10:", type=("build", "run"))
    depends_on("py-scikit-build-core@0.10:+pyproject", type="build")
    depends_on("py-pybind11@2.12:", type=("build", "link"))
    depends_on("cmake@3.18:", type="build")
    depends_on("ninja", type="build")

    # --- runtime requirements (pyproject.toml [project].dependencies) ------
    depends_on("py-numpy", type=("build", "run"))
    depends_on("py-torch", type=("build", "run"))

    # --- engines -----------------------------------------------------------
    depends_on("mpi", when="+mpi")
    # Reverie requires MPI_THREAD_MULTIPLE; mpi4py requests it by default.
    depends_on("py-mpi4py@3.1:", type=("build", "run"), when="+mpi")

    depends_on("mochi-thallium", when="+thallium")

    # --- GPU -------------------------------------------------------------
    # py-torch defaults to +cuda on Linux; tie it to this variant so that a
    # plain "spack install py-reverie" does not pull in a CUDA toolkit. Pick
    # the GPU architecture on py-torch (e.g. "^py-torch+cuda cuda_arch=80").
    depends_on("py-torch+cuda", type=("build", "run"), when="+cuda")
    depends_on("py-torch~cuda", type=("build", "run"), when="~cuda")

    def config_settings(self, spec, prefix):
        """PEP 517 config settings for scikit-build-core.

        Spack's PythonPackage turns each key into
        ``pip install --config-settings=KEY=VALUE``; this is equivalent to
        ``pip install -Ccmake.define.REVERIE_MPI=ON .`` by hand. Config
        settings take precedence over the REVERIE_MPI / REVERIE_THALLIUM
        environment variables that pyproject.toml also reads, so a stray
        variable in the user's shell cannot flip an engine on or off.
        """
        return {
            "cmake.define.REVERIE_MPI": "ON" if spec.satisfies("+mpi") else "OFF",
            "cmake.define.REVERIE_THALLIUM": "ON" if spec.satisfies("+thallium") else "OFF",
            "cmake.define.REVERIE_BUILD_TESTS": "OFF",
            # Spack's compiler wrappers already inject the RPATHs of the
            # dependencies; keep them in the installed extension module.
            "cmake.define.CMAKE_INSTALL_RPATH_USE_LINK_PATH": "ON",
            "cmake.build-type": "Release",
            # Not pyproject's build/{wheel_tag}: with `spack develop` that
            # would share a CMake cache with the developer's own pip builds.
            "build-dir": "build/spack-{wheel_tag}",
        }

    def setup_build_environment(self, env):
        # Help CMake's find_package() locate the engines' installs.
        if self.spec.satisfies("+mpi"):
            env.set("MPI_HOME", self.spec["mpi"].prefix)
