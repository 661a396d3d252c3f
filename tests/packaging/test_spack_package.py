"""Keeps the Spack recipe (spack/packages/py-reverie/package.py) in sync with
CMakeLists.txt and pyproject.toml.

Reads the three files as text (ast + regex, no Spack import) and fails when:
  * a variant passes a REVERIE_* CMake option that CMakeLists.txt does not declare;
  * an engine option of CMakeLists.txt (REVERIE_MPI, REVERIE_THALLIUM, or any REVERIE_*
    option whose doc string mentions an "engine") has no variant;
  * a [project].dependencies entry, a [build-system].requires entry or the `mpi`
    extra has no matching depends_on (torch -> py-torch, ...);
  * a version floor in pyproject.toml (>=X) is higher than the recipe's (@X:).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PY = ROOT / "spack" / "packages" / "py-reverie" / "package.py"
CMAKELISTS = ROOT / "CMakeLists.txt"
PYPROJECT = ROOT / "pyproject.toml"

# CMake options that select a transport engine: each needs a Spack variant.
ENGINE_OPTIONS = {"REVERIE_MPI", "REVERIE_THALLIUM"}
# CMake options the recipe may pass without a variant (fixed by the recipe).
RECIPE_FIXED_OPTIONS = {"REVERIE_BUILD_TESTS"}
# PyPI name -> Spack name where the "py-" + normalised name rule does not hold.
# mpich (the PyPI wheel of the MPI library) is the `mpi` virtual in Spack.
SPACK_NAME_OVERRIDES = {"cmake": "cmake", "ninja": "ninja", "python": "python", "mpich": "mpi"}


def _read(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} does not exist yet; nothing to check the Spack recipe against")
    return path.read_text(encoding="utf-8")


def _load_toml(text: str) -> dict:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.9/3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            pytest.skip("reading pyproject.toml needs Python >= 3.11 (tomllib) or the tomli package")
    return tomllib.loads(text)


# ---------------------------------------------------------------- package.py


class Recipe:
    """What the test needs from package.py, found with ast (no Spack import)."""

    def __init__(self, text: str) -> None:
        tree = ast.parse(text)
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        assert classes, "package.py defines no package class"
        self.cls = classes[0]
        self.variants: dict[str, object] = {}
        self.depends: list[tuple[str, str | None]] = []  # (spec string, when)
        for call in self._calls(self.cls):
            name = call.func.id if isinstance(call.func, ast.Name) else None
            args = [a.value for a in call.args if isinstance(a, ast.Constant)]
            kwargs = {k.arg: k.value for k in call.keywords}
            if name == "variant" and args:
                default = kwargs.get("default")
                self.variants[args[0]] = default.value if isinstance(default, ast.Constant) else None
            elif name == "depends_on" and args:
                when = kwargs.get("when")
                self.depends.append((args[0], when.value if isinstance(when, ast.Constant) else None))
        self.cmake_defines = self._cmake_defines()

    @staticmethod
    def _calls(node: ast.AST):
        # Directives at class level, including inside `if`/`with when(...)` blocks,
        # but not inside methods.
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Call):
                yield child
            yield from Recipe._calls(child)

    def _cmake_defines(self) -> dict[str, str]:
        """Maps each REVERIE_* option set in config_settings() to the source of its value."""
        methods = {n.name: n for n in self.cls.body if isinstance(n, ast.FunctionDef)}
        assert "config_settings" in methods, (
            "package.py must define config_settings(self, spec, prefix) returning "
            '{"cmake.define.REVERIE_...": ...} (the PEP 517 route Spack\'s PythonPackage supports)'
        )
        found = {}
        for node in ast.walk(methods["config_settings"]):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        m = re.fullmatch(r"cmake\.define\.(REVERIE_\w+)", key.value)
                        if m:
                            found[m.group(1)] = ast.unparse(value)
        return found

    def floors(self, spack_name: str) -> list[tuple[int, ...] | None]:
        """Version floors of every unconditional-or-conditional depends_on on spack_name."""
        out = []
        for spec, _when in self.depends:
            m = re.match(rf"^{re.escape(spack_name)}(?![\w-])(@(?P<lo>[\w.]*):?)?", spec)
            if m:
                out.append(_version(m.group("lo")) if m.group("lo") else None)
        return out


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def _spack_name(requirement: str) -> tuple[str, tuple[int, ...] | None]:
    """'scikit-build-core>=0.10' -> ('py-scikit-build-core', (0, 10))."""
    req = requirement.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", req)
    assert m, f"cannot parse requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    floor = re.search(r">=\s*([0-9][0-9.]*)", m.group(3))
    spack = SPACK_NAME_OVERRIDES.get(name, name if name.startswith("py-") else f"py-{name}")
    return spack, (_version(floor.group(1)) if floor else None)


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    assert PACKAGE_PY.is_file(), f"missing {PACKAGE_PY.relative_to(ROOT)}"
    return Recipe(PACKAGE_PY.read_text(encoding="utf-8"))


def _cmake_declarations(text: str) -> dict[str, str]:
    """REVERIE_* options/cache variables of CMakeLists.txt -> their doc string."""
    text = re.sub(r"#[^\n]*", "", text)  # drop comments
    found = {}
    for m in re.finditer(r"\boption\s*\(\s*(REVERIE_\w+)\s+\"([^\"]*)\"", text, re.IGNORECASE):
        found[m.group(1)] = m.group(2)
    for m in re.finditer(
        r"\bset\s*\(\s*(REVERIE_\w+)\b[^)]*?\bCACHE\s+\w+\s*(?:\"([^\"]*)\")?", text, re.IGNORECASE
    ):
        found[m.group(1)] = m.group(2) or ""
    return found


@pytest.fixture(scope="module")
def cmake_declarations() -> dict[str, str]:
    return _cmake_declarations(_read(CMAKELISTS))


@pytest.fixture(scope="module")
def cmake_options(cmake_declarations: dict[str, str]) -> set[str]:
    return set(cmake_declarations)


@pytest.fixture(scope="module")
def engine_options(cmake_declarations: dict[str, str]) -> set[str]:
    """The known engine options plus any option documented as building an engine."""
    documented = {name for name, doc in cmake_declarations.items() if re.search(r"\bengine\b", doc, re.I)}
    return (ENGINE_OPTIONS & set(cmake_declarations)) | documented


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return _load_toml(_read(PYPROJECT))


# --------------------------------------------------------------------- tests


def test_recipe_parses_and_has_expected_variants(recipe: Recipe) -> None:
    assert {"mpi", "thallium", "cuda"} <= set(recipe.variants), recipe.variants
    assert recipe.variants["mpi"] is True, "+mpi must be the default"


def test_every_cmake_option_passed_by_the_recipe_exists(recipe: Recipe, cmake_options: set[str]) -> None:
    missing = sorted(set(recipe.cmake_defines) - cmake_options)
    assert not missing, (
        f"package.py passes CMake option(s) {missing} that CMakeLists.txt does not declare "
        f"(declared: {sorted(cmake_options)})"
    )


def test_every_engine_option_has_a_variant(recipe: Recipe, engine_options: set[str]) -> None:
    for option in sorted(engine_options):
        variant = option.removeprefix("REVERIE_").lower()
        assert variant in recipe.variants, f"CMake option {option} has no +{variant} variant in package.py"
        assert option in recipe.cmake_defines, f"config_settings() does not pass cmake.define.{option}"
        source = recipe.cmake_defines[option]
        assert f"+{variant}" in source and "ON" in source and "OFF" in source, (
            f"cmake.define.{option} must be ON/OFF from +{variant}, got {source}"
        )
    # Anything else with a variant-like name must map to a declared option too.
    for option in recipe.cmake_defines:
        variant = option.removeprefix("REVERIE_").lower()
        assert variant in recipe.variants or option in RECIPE_FIXED_OPTIONS, (
            f"config_settings() passes {option}, which is neither a variant nor a fixed recipe option"
        )


def test_engine_options_are_known(cmake_options: set[str]) -> None:
    # A renamed engine option would otherwise make the test above pass vacuously.
    assert ENGINE_OPTIONS <= cmake_options, (
        f"CMakeLists.txt no longer declares {sorted(ENGINE_OPTIONS - cmake_options)}: "
        "update the Spack recipe and ENGINE_OPTIONS in this test"
    )


def _check_requirements(recipe: Recipe, requirements: list[str], where: str) -> None:
    problems = []
    for requirement in requirements:
        spack_name, floor = _spack_name(requirement)
        floors = recipe.floors(spack_name)
        if not floors:
            problems.append(f"{requirement!r} ({where}) has no depends_on({spack_name!r}...)")
            continue
        if floor is not None and not any(f is not None and f >= floor for f in floors):
            problems.append(
                f"{requirement!r} ({where}) needs {spack_name}@{'.'.join(map(str, floor))}: in package.py"
            )
    assert not problems, "package.py drifted from pyproject.toml:\n  " + "\n  ".join(problems)


def test_runtime_dependencies_are_depends_on(recipe: Recipe, pyproject: dict) -> None:
    _check_requirements(recipe, pyproject["project"].get("dependencies", []), "[project].dependencies")


def test_build_requirements_are_depends_on(recipe: Recipe, pyproject: dict) -> None:
    _check_requirements(recipe, pyproject["build-system"]["requires"], "[build-system].requires")
    cmake_version = pyproject.get("tool", {}).get("scikit-build", {}).get("cmake", {}).get("version")
    if cmake_version:
        _check_requirements(recipe, [f"cmake{cmake_version}"], "tool.scikit-build.cmake.version")
    requires_python = pyproject["project"].get("requires-python")
    if requires_python:
        _check_requirements(recipe, [f"python{requires_python}"], "requires-python")


def test_mpi_extra_is_a_depends_on_under_plus_mpi(recipe: Recipe, pyproject: dict) -> None:
    extra = pyproject["project"].get("optional-dependencies", {}).get("mpi")
    if not extra:
        pytest.skip("pyproject.toml has no `mpi` extra")
    _check_requirements(recipe, extra, "[project.optional-dependencies].mpi")
    for requirement in extra:
        spack_name, _ = _spack_name(requirement)
        whens = {when for spec, when in recipe.depends if spec.split("@")[0].split("+")[0] == spack_name}
        assert "+mpi" in whens, f"depends_on({spack_name!r}) must be conditional on +mpi"


def test_cmake_declaration_parser() -> None:
    text = """
    set(REVERIE_MPI AUTO CACHE STRING "Build the MPI engine: AUTO, ON, OFF")
    set(REVERIE_SANITIZE "" CACHE STRING "Sanitizers")
    option(REVERIE_BUILD_TESTS "Build the C++ unit tests" OFF)
    # option(REVERIE_OLD "commented out" OFF)
    set(REVERIE_HAVE_MPI ON)
    """
    assert _cmake_declarations(text) == {
        "REVERIE_MPI": "Build the MPI engine: AUTO, ON, OFF",
        "REVERIE_SANITIZE": "Sanitizers",
        "REVERIE_BUILD_TESTS": "Build the C++ unit tests",
    }


def test_name_mapping() -> None:
    assert _spack_name("torch") == ("py-torch", None)
    assert _spack_name("NumPy") == ("py-numpy", None)
    assert _spack_name("scikit_build_core>=0.10") == ("py-scikit-build-core", (0, 10))
    assert _spack_name("mpi4py>=3.1; extra == 'mpi'") == ("py-mpi4py", (3, 1))
    assert _spack_name("cmake>=3.18") == ("cmake", (3, 18))
    assert _spack_name("python>=3.9") == ("python", (3, 9))
    assert _spack_name("mpich; sys_platform == 'linux'") == ("mpi", None)
