"""reverie clean-shm removes only files no live process maps or holds open."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reverie import cli
from reverie.shm_cleanup import InUse, stale_files

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")

# Maps (or only opens) the file named by argv[2], says so, and holds it until stdin closes.
HOLDER = """
import mmap, sys
f = open(sys.argv[2], "r+b")
m = mmap.mmap(f.fileno(), 0) if sys.argv[1] == "map" else None
if m is not None:
    f.close()  # only the mapping keeps it: what a job's shared memory looks like
print("holding", flush=True)
sys.stdin.read()
"""


def shm_file(folder: Path, name: str, age: float = 3600.0) -> Path:
    path = folder / name
    path.write_bytes(b"\0" * 4096)
    old = time.time() - age
    os.utime(path, (old, old))
    return path


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)


def hold(path: Path, how: str, started: list[subprocess.Popen[str]]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, how, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(proc)
    assert proc.stdout.readline().strip() == "holding"  # type: ignore[union-attr]


def test_live_mapping_and_open_file_are_kept_stale_one_removed(
    tmp_path: Path, holders: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    mapped = shm_file(tmp_path, "mpich_shm_mapped")
    opened = shm_file(tmp_path, "mpich_shm_opened")
    stale = shm_file(tmp_path, "mpich_shm_stale")
    other = shm_file(tmp_path, "not_mpich")
    hold(mapped, "map", holders)
    hold(opened, "open", holders)

    assert cli.main(["clean-shm", "--dir", str(tmp_path), "--dry-run"]) == 0
    assert stale.exists() and f"would remove {stale}" in capsys.readouterr().out

    assert cli.main(["clean-shm", "--dir", str(tmp_path)]) == 0
    assert not stale.exists()
    assert mapped.exists() and opened.exists() and other.exists()


def test_a_recent_file_is_kept(tmp_path: Path) -> None:
    fresh = shm_file(tmp_path, "mpich_shm_fresh", age=0.0)
    old = shm_file(tmp_path, "mpich_shm_old")
    stale, kept = stale_files(tmp_path, min_age=60.0, in_use=InUse())
    assert stale == [old] and kept == [fresh]


def test_files_of_an_unreadable_owner_are_kept(tmp_path: Path) -> None:
    path = shm_file(tmp_path, "mpich_shm_x")
    stale, kept = stale_files(tmp_path, min_age=0.0, in_use=InUse(unreadable_uids={path.stat().st_uid}))
    assert stale == [] and kept == [path]


@pytest.mark.parametrize(
    ("argv", "names"), [(["--min-age", "-1"], "--min-age"), (["--dir", "/no/such"], "--dir")]
)
def test_bad_arguments_are_named(argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clean-shm", *argv]) == 2
    assert names in capsys.readouterr().err


def test_unlink_own_segments_takes_only_this_process_mpich_files(tmp_path: Path) -> None:
    from reverie.shm_cleanup import unlink_own_segments

    ours, other, gone = tmp_path / "mpich_shm_ab_0", tmp_path / "mpich_shm_cd_0", tmp_path / "mpich_shm_ef_0"
    ours_ompi = tmp_path / "sm_segment.node1.0.5e3a0001.1"  # Open MPI 5's sm BTL segment
    for f in (ours, other, ours_ompi):
        f.write_bytes(b"x")
    not_mpich = tmp_path / "psm2_shm.1"
    not_mpich.write_bytes(b"x")
    maps = "\n".join(
        [
            f"7f00-7f10 rw-s 00000000 00:1a 11 {ours}",
            f"7f10-7f20 rw-s 00000000 00:1a 12 {gone} (deleted)",
            f"7f20-7f30 rw-s 00000000 00:1a 13 {not_mpich}",
            f"7f30-7f40 rw-s 00000000 00:1a 14 {ours_ompi}",
            "7f40-7f50 rw-p 00000000 00:00 0 ",
        ]
    )
    assert unlink_own_segments(maps, shm_dir=tmp_path) == [ours, ours_ompi]
    assert not ours.exists() and not ours_ompi.exists() and other.exists() and not_mpich.exists()


def test_clean_patterns_take_open_mpi_and_mercury_na_sm_files_too(tmp_path: Path) -> None:
    from reverie.shm_cleanup import CLEAN_PATTERNS

    names = ["mpich_shm_ab_0", "na_sm-123-0", "psm2_shm.1", "sm_segment.n1.0.7b.0", "vader_segment.n1.7b.1"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    stale, kept = stale_files(tmp_path, CLEAN_PATTERNS, min_age=0.0, in_use=InUse())
    assert sorted(p.name for p in stale) == [
        "mpich_shm_ab_0",
        "na_sm-123-0",
        "sm_segment.n1.0.7b.0",
        "vader_segment.n1.7b.1",
    ]
    assert kept == []
