"""reverie clean-shm: remove the shared-memory files that crashed MPI jobs left behind.

MPICH keeps its intra-node channels in files /dev/shm/mpich_shm_*, Open MPI 5 in
/dev/shm/sm_segment.* (Open MPI 4: vader_segment.*), and both unlink them when the job ends
cleanly (Mercury's na+sm likewise /dev/shm/na_sm-*); a job killed by a signal leaves them, and they hold memory (tmpfs) until the node reboots. A file is removed only when it is safe to:

* no live process maps it (/proc/<pid>/maps) or holds it open (/proc/<pid>/fd),
  compared by device and inode, so a live job's file is never touched;
* no process of the file's owner was unreadable (another user's processes are hidden from
  a non-root user: their files are kept, as nothing can be known about them). This
  process's ancestors are exempt (a sandbox may hide its init even from root): a process
  that started the cleaner, directly or not, is a shell or launcher, not a crashed job;
* it was not modified in the last --min-age seconds (a job starting up may have created
  the file and not yet mapped it).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHM_DIR = Path("/dev/shm")
#: The MPI libraries' intra-node files, comma-separated shell patterns: MPICH's, Open MPI 5's
#: sm BTL segments (sm_segment.<host>.<uid>.<job>.<rank>) and Open MPI 4's (vader_segment.*).
PATTERN = "mpich_shm_*,sm_segment.*,vader_segment.*"
#: What clean-shm considers: the MPI files and Mercury's na+sm ones (na_sm-<pid>-<n>, left
#: by a Thallium rank that died), comma-separated shell patterns.
CLEAN_PATTERNS = PATTERN + ",na_sm-*"
MIN_AGE_S = 60.0


@dataclass
class InUse:
    """What the live processes reference: (device, inode) pairs, and the uids of processes
    whose maps or file descriptors could not be read."""

    files: set[tuple[int, int]] = field(default_factory=set)
    unreadable_uids: set[int] = field(default_factory=set)


def _mapped(maps: str) -> set[tuple[int, int]]:
    """(device, inode) of every file-backed mapping in the text of a /proc/<pid>/maps."""
    found = set()
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) >= 5 and parts[4] != "0":
            major, minor = (int(x, 16) for x in parts[3].split(":"))
            found.add((os.makedev(major, minor), int(parts[4])))
    return found


def _open_files(fd_dir: Path) -> set[tuple[int, int]]:
    found = set()
    for fd in fd_dir.iterdir():
        try:
            st = fd.stat()  # follows the link to the open file, even an unlinked one
        except (FileNotFoundError, PermissionError):
            continue  # closed since the listing, or a socket/pipe we may not follow
        found.add((st.st_dev, st.st_ino))
    return found


def ancestors(proc: Path = Path("/proc"), pid: int | None = None) -> set[int]:
    """Pids of the processes above ``pid`` (default: this process), up to the root."""
    found: set[int] = set()
    pid = os.getpid() if pid is None else pid
    while pid > 0 and pid not in found:
        found.add(pid)
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised name
    return found


def scan_processes(proc: Path = Path("/proc")) -> InUse:
    """Files mapped or open in any live process under ``proc``."""
    in_use = InUse()
    exempt = ancestors(proc)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            in_use.files |= _mapped((entry / "maps").read_text())
            in_use.files |= _open_files(entry / "fd")
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended during the scan: it holds nothing any more
        except PermissionError:
            if int(entry.name) not in exempt:
                in_use.unreadable_uids.add(uid)
    return in_use


def _matches(name: str, patterns: str) -> bool:
    """Whether ``name`` matches one of the comma-separated shell ``patterns``."""
    return any(fnmatch.fnmatch(name, p) for p in patterns.split(",") if p)


def unlink_own_segments(
    maps: str | None = None, shm_dir: Path = SHM_DIR, pattern: str = PATTERN
) -> list[Path]:
    """Unlinks the MPI library's files (``pattern``, comma-separated) this process maps (from
    ``/proc/self/maps``); returns them.

    For a process about to end without MPI_Finalize (after a peer was lost), which would
    otherwise leave its job's files behind. Safe for the peers: the job's ranks mapped the
    files at MPI_Init, so unlinking removes only the names, never a live mapping.
    """
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return []
    names = {line.split(maxsplit=5)[5] for line in maps.splitlines() if len(line.split(maxsplit=5)) == 6}
    own = sorted(
        Path(n)
        for n in names
        if Path(n).parent == shm_dir and _matches(Path(n).name, pattern) and not n.endswith(" (deleted)")
    )
    for path in own:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    return own


def stale_files(
    shm_dir: Path = SHM_DIR,
    pattern: str = PATTERN,
    min_age: float = MIN_AGE_S,
    in_use: InUse | None = None,
    now: float | None = None,
) -> tuple[list[Path], list[Path]]:
    """(stale, kept): the files of ``shm_dir`` matching ``pattern`` that no live process
    references, and those that are or may be in use."""
    in_use = scan_processes() if in_use is None else in_use
    now = time.time() if now is None else now
    stale, kept = [], []
    for path in sorted(shm_dir.iterdir()):
        if not _matches(path.name, pattern) or not path.is_file():
            continue
        st = path.stat()
        busy = (st.st_dev, st.st_ino) in in_use.files or st.st_uid in in_use.unreadable_uids
        (kept if busy or now - st.st_mtime < min_age else stale).append(path)
    return stale, kept


def add_clean_shm_parser(sub: Any) -> None:
    """The ``clean-shm`` subcommand of the ``reverie`` parser."""
    p = sub.add_parser(
        "clean-shm",
        help="remove shared-memory files left in /dev/shm by crashed MPI jobs (never a live job's)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--dir", type=Path, default=SHM_DIR, help=f"folder to clean (default: {SHM_DIR})")
    p.add_argument(
        "--pattern",
        default=CLEAN_PATTERNS,
        help=f"file names to consider, comma-separated shell patterns (default: {CLEAN_PATTERNS})",
    )
    p.add_argument(
        "--min-age",
        type=float,
        default=MIN_AGE_S,
        metavar="SECONDS",
        help=f"keep files modified more recently than this (default: {MIN_AGE_S:g})",
    )


def run_clean_shm(ns: argparse.Namespace) -> int:
    """Removes (or lists, with --dry-run) the stale files; returns the exit status."""
    if ns.min_age < 0:
        raise ValueError(f"--min-age: expected seconds >= 0, got {ns.min_age}")
    if not ns.dir.is_dir():
        raise ValueError(f"--dir: {ns.dir} is not a folder")
    stale, kept = stale_files(ns.dir, ns.pattern, ns.min_age)
    for path in stale:
        print(f"{'would remove' if ns.dry_run else 'removing'} {path}")
        if not ns.dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError as e:  # another user's file in a sticky /dev/shm: not ours to remove
                print(f"  not removed: {e.strerror}")
    print(
        f"{len(stale)} stale file(s) {'found' if ns.dry_run else 'removed'}, {len(kept)} in use or too recent kept"
    )
    return 0
