"""Every `#include "..."` under cpp/ points down the layers (or stays in its own layer).

Layers, lowest first: common, store, policy, sampling, buffer, transport, engine, bindings
(docs/architecture.md). A lower layer reaching up makes it impossible to build, test or
reason about it without the layers above; this test reads the sources as text and names
every include that does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPP = ROOT / "cpp"
LAYERS = ("common", "store", "policy", "sampling", "buffer", "transport", "engine", "bindings")
# Engines are siblings inside the transport layer: neither may depend on the other.
SIBLINGS = {"transport/mpi", "transport/thallium"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def layer_of(path: str) -> int:
    """Index in LAYERS of a path relative to cpp/ ("engine/x.h" -> 6)."""
    top = path.split("/", 1)[0]
    if top not in LAYERS:
        raise ValueError(f"{path}: expected a file under one of cpp/{{{','.join(LAYERS)}}}/")
    return LAYERS.index(top)


def sibling_of(path: str) -> str | None:
    return next((s for s in SIBLINGS if path.startswith(s + "/")), None)


def violations(source: str, text: str) -> list[str]:
    """The includes of `text` (the file cpp/`source`) that point up or across the layers."""
    found = []
    for target in INCLUDE.findall(text):
        if layer_of(target) > layer_of(source):
            found.append(
                f"cpp/{source} includes {target}: {LAYERS[layer_of(target)]} is above {LAYERS[layer_of(source)]}"
            )
        elif sibling_of(source) and sibling_of(target) not in (None, sibling_of(source)):
            found.append(
                f"cpp/{source} includes {target}: {sibling_of(source)} must not depend on {sibling_of(target)}"
            )
    return found


def cpp_sources() -> list[Path]:
    return sorted(p for p in CPP.rglob("*") if p.suffix in {".h", ".cc"})


def test_every_cpp_file_is_in_a_layer():
    assert cpp_sources(), "no C++ sources found under cpp/"
    for path in cpp_sources():
        layer_of(path.relative_to(CPP).as_posix())


def test_includes_point_down_the_layers():
    found = []
    for path in cpp_sources():
        found += violations(path.relative_to(CPP).as_posix(), path.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "include", "expected"),
    [
        ("transport/thallium/thallium_transport.h", "engine/staging_block.h", "engine is above transport"),
        ("common/backoff.h", "store/slot_arena.h", "store is above common"),
        ("transport/mpi/mpi_transport.cc", "transport/thallium/thallium_transport.h", "must not depend"),
    ],
)
def test_an_upward_or_sibling_include_is_reported(source: str, include: str, expected: str):
    (message,) = violations(source, f'#include <vector>\n#include "{include}"\n')
    assert expected in message


def test_downward_and_same_layer_includes_pass():
    text = '#include "store/aligned_block.h"\n#include "engine/rehearsal_engine.h"\n#include "transport/transport.h"\n'
    assert violations("engine/rehearsal_engine.cc", text) == []
