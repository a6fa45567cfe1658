"""What `zswap-rs versus` changes on the machine, each change a context manager that undoes it.

A run turns the kernel's zswap on and off and sets its parameters, creates a
memory cgroup per side, and turns on a swap file of its own. Each of these is
global state that other people's programs see, so each lives in a context
manager here whose `__exit__` puts back exactly what `__enter__` found, on a
normal exit, on an exception, on Ctrl-C and (through `signals_raise`) on
SIGTERM. The restoring code runs with SIGINT and SIGTERM blocked
(`_shielded`), so that a second Ctrl-C cannot leave a half-restored machine;
a signal that arrives meanwhile is delivered once the restore is done.

SIGKILL, or a power cut, still leaves the machine changed; so what a run
leaves is named after it (`zswap-rs-versus-PID` for the cgroups and the swap
file's directory), and the zswap parameters it found are written down
(`PARAMETERS_JOURNAL`) before it changes any, as is a debugfs it mounts
(`DEBUGFS_JOURNAL`). The next run, once it holds
the run lock (so that no live run can own them), puts all of it back
(`recover_leftovers`) and says so.

Nothing here imports the compiled module or NumPy: this is the parent's side.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import gzip
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = [
    "Debugfs",
    "MachineError",
    "MemoryCgroup",
    "RunLock",
    "SwapFile",
    "Terminated",
    "ZswapParameters",
    "active_swaps",
    "kernel_compressor",
    "read_vmstat",
    "recover_leftovers",
    "require_root",
    "shielded_call",
    "signals_raise",
]

#: Where the kernel's zswap keeps its module parameters.
ZSWAP_PARAMETERS = Path("/sys/module/zswap/parameters")
#: The highest swap priority swapon(2) takes: the kernel then puts every page
#: on this device until it is full, before any other active swap.
HIGHEST_SWAP_PRIORITY = 32767
#: How long to wait for the processes of a cgroup to go before rmdir.
CGROUP_DRAIN_SECONDS = 10.0
#: The lock that keeps two runs from changing zswap under each other.
LOCK_PATH = Path("/run/lock/zswap-rs-versus.lock")
#: The zswap parameters a run found, written before it changes any and
#: removed once they are back: left behind, a killed run's to restore.
PARAMETERS_JOURNAL = Path("/run/lock/zswap-rs-versus.parameters.json")
#: Written while a run has debugfs mounted that was not: `PID path`.
DEBUGFS_JOURNAL = Path("/run/lock/zswap-rs-versus.debugfs")
#: What a run names after its PID: its cgroups and its swap file's directory.
LEFTOVER_NAME = re.compile(r"^zswap-rs-versus-(\d+)-")


class MachineError(Exception):
    """The machine refused a change, or is not in a state a run can start from."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so every `with` restores."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def require_root(euid: Callable[[], int] = os.geteuid) -> None:
    """Raise MachineError unless the effective user is root (`euid` is injectable for tests)."""
    if euid() != 0:
        raise MachineError(
            "zswap-rs versus must run as root: it sets the kernel's zswap parameters "
            f"({ZSWAP_PARAMETERS}), creates a memory cgroup and turns on a swap file of its "
            "own (try: sudo zswap-rs versus ...)"
        )


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Block SIGINT and SIGTERM while a restore runs; pending ones arrive afterwards."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Change(abc.ABC):
    """A change to the machine, made on entering a `with` block and taken back
    by `undo()` on leaving it, however it is left, with SIGINT and SIGTERM held
    until the machine is as it was."""

    @abc.abstractmethod
    def undo(self) -> None:
        """Put the machine back as it was before the change."""

    def __exit__(self, *exc: object) -> None:
        with _shielded():
            self.undo()


def shielded_call(fn: Callable[..., object], *args: object) -> None:
    """Call `fn(*args)` with SIGINT and SIGTERM held until it returns (for ExitStack callbacks)."""
    with _shielded():
        fn(*args)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (Ctrl-C already raises KeyboardInterrupt)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace").strip()


def _write(path: Path, value: str) -> None:
    """Write one value to a sysfs or cgroupfs file; MachineError says which and why."""
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as e:
        raise MachineError(f"cannot write {value!r} to {path}: {e.strerror}") from None


# --------------------------------------------------------------------------
# /proc


def read_vmstat(path: Path = Path("/proc/vmstat")) -> dict[str, int]:
    """The kernel's event counters (pswpin, pswpout, zswpin, zswpout, zswpwb, ...)."""
    out: dict[str, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[name] = int(value)
    return out


@dataclass(frozen=True)
class SwapArea:
    """One line of /proc/swaps."""

    path: str
    kind: str
    size_kib: int
    used_kib: int
    priority: int


def active_swaps(path: Path = Path("/proc/swaps")) -> list[SwapArea]:
    """The swap areas the kernel has on right now."""
    areas = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        # A path with spaces is escaped by the kernel (\040), so five fields hold.
        name = fields[0].replace("\\040", " ")
        areas.append(SwapArea(name, fields[1], int(fields[2]), int(fields[3]), int(fields[4])))
    return areas


# --------------------------------------------------------------------------
# zswap


def _kernel_config() -> dict[str, str] | None:
    """The running kernel's build options from /proc/config.gz, when the kernel exposes it."""
    try:
        text = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode(errors="replace")
    except OSError:
        return None
    conf = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            conf[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            conf[line[2:].split()[0]] = "n"
    return conf


def _crypto_compressors() -> dict[str, str]:
    """Compression algorithms the kernel's crypto API has loaded: {name or driver: name}."""
    found: dict[str, str] = {}
    entry: dict[str, str] = {}
    try:
        text = Path("/proc/crypto").read_text(encoding="ascii", errors="replace")
    except OSError:
        return found
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if entry.get("type") in ("compression", "acomp", "scomp") and "name" in entry:
                found[entry["name"]] = entry["name"]
                found.setdefault(entry.get("driver", entry["name"]), entry["name"])
            entry = {}
            continue
        key, _, value = line.partition(":")
        entry[key.strip()] = value.strip()
    return found


def kernel_compressor(name: str) -> str | None:
    """None if the kernel's zswap can compress with `name` here, else why it cannot.

    Writing the name to the compressor parameter is no test: while zswap has
    no pool yet (it was never enabled since boot), the kernel stores any
    string, and falls back to its build-time default when it is enabled. So
    this asks the crypto API (/proc/crypto) and, for an algorithm not loaded
    yet, whether a module for it exists; `ZswapParameters.configure` checks
    again after enabling.
    """
    loaded = _crypto_compressors()
    if name in loaded:
        return None
    release = platform.release()
    moddir = Path("/lib/modules") / release / "kernel" / "crypto"
    if moddir.is_dir() and any(moddir.glob(f"{name}.ko*")):
        return None  # the crypto API loads it on demand
    conf = _kernel_config()
    option = "CONFIG_CRYPTO_" + name.upper().replace("-", "_")
    if conf is not None and conf.get(option, "n") == "n":
        why = f"{option} is not set in this kernel ({release}) and no module for it is installed"
    else:
        why = f"the crypto API of this kernel ({release}) has no {name}"
    have = ", ".join(sorted(set(loaded.values())))
    return f"{why}; /proc/crypto offers: {have or 'no compressor at all'}"


class ZswapParameters(_Change):
    """Every zswap module parameter as it was on entry, put back on exit.

    Restoring writes only what differs, with `enabled` last, so that zswap is
    never on with a half-restored configuration; a parameter that cannot be
    put back is named in the MachineError raised at the end (after all the
    others were tried).
    """

    def __init__(self, root: Path = ZSWAP_PARAMETERS, journal: Path | None = None) -> None:
        self.root = root
        self.journal = journal
        self.saved: dict[str, str] = {}

    def snapshot(self) -> dict[str, str]:
        """The writable parameters and their values, now."""
        out = {}
        for p in sorted(self.root.iterdir()):
            if p.stat().st_mode & 0o200:
                out[p.name] = _read(p)
        return out

    def __enter__(self) -> ZswapParameters:
        if not self.root.is_dir():
            raise MachineError(f"this kernel has no zswap ({self.root} is missing)")
        self.saved = self.snapshot()
        if self.journal is not None:
            # Written whole, then renamed: a kill mid-write leaves no half journal.
            record = {"pid": os.getpid(), "root": str(self.root), "saved": self.saved}
            tmp = self.journal.with_suffix(".tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, self.journal)
        return self

    def get(self, name: str) -> str:
        return _read(self.root / name)

    def set(self, name: str, value: str) -> None:
        """Set one parameter and check that the kernel took it."""
        if name not in self.saved:
            raise MachineError(f"zswap has no writable parameter {name!r} here")
        _write(self.root / name, value)
        got = self.get(name)
        if got != value:
            raise MachineError(f"zswap parameter {name}: wrote {value!r}, the kernel has {got!r}")

    def configure(self, enabled: bool, **values: str) -> None:
        """Set `values` with zswap off, then turn it on if `enabled`, checking the compressor."""
        self.set("enabled", "N")
        for name, value in values.items():
            self.set(name, value)
        if enabled:
            self.set("enabled", "Y")
            want = values.get("compressor")
            # The kernel may have swapped in its default compressor on enable.
            if want is not None and self.get("compressor") != want:
                raise MachineError(
                    f"the kernel's zswap fell back from {want} to {self.get('compressor')}"
                )

    def undo(self) -> None:
        failed = []
        order = [n for n in self.saved if n != "enabled"] + ["enabled"]
        with contextlib.suppress(MachineError, OSError):
            self.set("enabled", "N")
        for name in order:
            if name not in self.saved:
                continue
            try:
                if self.get(name) != self.saved[name]:
                    _write(self.root / name, self.saved[name])
                if self.get(name) != self.saved[name]:
                    failed.append(f"{name} is {self.get(name)!r}, was {self.saved[name]!r}")
            except (MachineError, OSError) as e:
                failed.append(f"{name}: {e}")
        if failed:
            raise MachineError("could not restore zswap: " + "; ".join(failed))
        if self.journal is not None:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()


# --------------------------------------------------------------------------
# cgroups


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) of every mount."""
    out = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append((f[1].replace("\\040", " "), f[2], f[3]))
    return out


def find_memory_hierarchy() -> tuple[int, Path]:
    """(1 or 2, the directory to make cgroups in) for the memory controller here.

    The v1 memory hierarchy wins where it is mounted: the controller can be
    bound to one hierarchy only, and a v2 tree next to it then has no
    memory controller at all.
    """
    mounts = _mounts()
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options.split(","):
            return 1, Path(point)
    for point, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        root = Path(point)
        try:
            if "memory" not in _read(root / "cgroup.controllers").split():
                continue
            if "memory" not in _read(root / "cgroup.subtree_control").split():
                # Turning it on would change every cgroup below the root:
                # not a change for a benchmark to make behind anyone's back.
                raise MachineError(
                    f"the memory controller is not enabled for the cgroups under {root}: "
                    f"echo +memory > {root / 'cgroup.subtree_control'}"
                )
            return 2, root
        except OSError:
            continue
    raise MachineError("no memory cgroup controller is mounted (neither v1 nor v2)")


class MemoryCgroup(_Change):
    """A fresh memory cgroup with a hard limit, removed on exit with whatever ran in it.

    Processes join it through `preexec` (in the child between fork and exec),
    so that the interpreter's own start-up is charged to the limit as well.
    The v1 limit (`memory.limit_in_bytes`) and v2's `memory.max` both make the
    kernel reclaim, and so swap, inside the group; swap itself is left
    unlimited (v1 memsw, v2 `memory.swap.max`), as is v2's `memory.zswap.max`.
    """

    def __init__(self, name: str, limit_bytes: int) -> None:
        self.version, parent = find_memory_hierarchy()
        self.path = parent / name
        self.limit_bytes = limit_bytes
        self._procs_fd: int | None = None

    @classmethod
    def existing(cls, path: Path) -> MemoryCgroup:
        """A group already there (a killed run's), to `undo()`: end its processes, remove it."""
        group = cls.__new__(cls)
        group.version, _ = find_memory_hierarchy()
        group.path, group.limit_bytes, group._procs_fd = path, 0, None
        return group

    def __enter__(self) -> MemoryCgroup:
        try:
            self.path.mkdir()
        except OSError as e:
            raise MachineError(f"cannot create the cgroup {self.path}: {e.strerror}") from None
        try:
            if self.version == 1:
                _write(self.path / "memory.limit_in_bytes", str(self.limit_bytes))
            else:
                _write(self.path / "memory.max", str(self.limit_bytes))
                for name in ("memory.swap.max", "memory.zswap.max"):
                    if (self.path / name).exists():
                        _write(self.path / name, "max")
            self._procs_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        except BaseException:
            self.undo()
            raise
        return self

    def preexec(self) -> None:
        """Move the calling process into the group (for Popen's preexec_fn: no allocation)."""
        assert self._procs_fd is not None
        os.write(self._procs_fd, b"0")

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v1 if self.version == 1 else v2)

    def usage_file(self) -> Path:
        """The file holding the group's current charge, in bytes."""
        return self._file("memory.usage_in_bytes", "memory.current")

    def peak_bytes(self) -> int | None:
        try:
            return int(_read(self._file("memory.max_usage_in_bytes", "memory.peak")))
        except (OSError, ValueError):
            return None

    def kmem_peak_bytes(self) -> int | None:
        """v1's peak kernel-memory charge (where a charged zswap pool would show); None on v2."""
        if self.version != 1:
            return None
        try:
            return int(_read(self.path / "memory.kmem.max_usage_in_bytes"))
        except (OSError, ValueError):
            return None

    def stat(self) -> dict[str, int]:
        """memory.stat as numbers (v1 has no swap event counters; v2 has zswpin etc.)."""
        out = {}
        with contextlib.suppress(OSError):
            for line in _read(self.path / "memory.stat").splitlines():
                key, _, value = line.partition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = int(value)
        return out

    def oom_kills(self) -> int:
        """How many processes the group's limit has killed (0 if the kernel does not say)."""
        with contextlib.suppress(OSError, ValueError):
            if self.version == 1:
                for line in _read(self.path / "memory.oom_control").splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
            else:
                for line in _read(self.path / "memory.events").splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        return 0

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in _read(self.path / "cgroup.procs").split()]
        return []

    def undo(self) -> None:
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        # Only processes this run started can be in the group: end them.
        deadline = time.monotonic() + CGROUP_DRAIN_SECONDS
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise MachineError(f"cannot remove the cgroup {self.path}: {e.strerror}") from e
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


# --------------------------------------------------------------------------
# swap file


class SwapFile(_Change):
    """A swap file of this run's own: allocated, mkswap'd, swapon'd at the highest priority.

    On exit: swapoff, then removed. The file is allocated with
    posix_fallocate, which the kernel accepts for swap on ext4 and xfs (no
    holes); a filesystem that refuses swap files (tmpfs, a btrfs without
    nocow) is reported with swapon's own message.
    """

    def __init__(self, path: Path, size_bytes: int, priority: int = HIGHEST_SWAP_PRIORITY) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.priority = priority
        self._created = False
        self._on = False

    def __enter__(self) -> SwapFile:
        try:
            self._create()
        except BaseException:
            with _shielded():
                self.undo()
            raise
        return self

    def _create(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise MachineError(f"cannot create the swap file {self.path}: {e.strerror}") from None
        self._created = True
        try:
            os.posix_fallocate(fd, 0, self.size_bytes)
        except OSError as e:
            raise MachineError(
                f"cannot allocate {self.size_bytes >> 20} MiB for the swap file {self.path}: "
                f"{e.strerror}"
            ) from None
        finally:
            os.close(fd)
        _run_tool(["mkswap", "-L", "zswap-rs-versus", str(self.path)])
        _run_tool(["swapon", "-p", str(self.priority), str(self.path)])
        self._on = True

    def used_kib(self) -> int:
        for area in active_swaps():
            if os.path.realpath(area.path) == os.path.realpath(self.path):
                return area.used_kib
        return 0

    def _active(self) -> bool:
        real = os.path.realpath(self.path)
        return any(os.path.realpath(a.path) == real for a in active_swaps())

    def undo(self) -> None:
        error = None
        # Ask the kernel, not only our flag: a Ctrl-C that landed while
        # swapon(8) ran may have left the file on without our knowing.
        if self._on or (self._created and self._active()):
            self._on = True
            try:
                _run_tool(["swapoff", str(self.path)])
                self._on = False
            except MachineError as e:
                error = e
        if self._created and not self._on:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._created = False
        if error is not None:
            raise error


def _run_tool(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise MachineError(f"{argv[0]} is not installed (util-linux)") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise MachineError(f"{' '.join(argv)} failed: {msg[-1] if msg else proc.returncode}")


# --------------------------------------------------------------------------
# debugfs: the kernel zswap's pool size


class Debugfs(_Change):
    """The kernel's debugfs, mounted for the run where it was not, unmounted after.

    Only for `pool_total_size` (/sys/kernel/debug/zswap): the one place the
    kernel says how big its zswap pool is. A kernel or a container without
    debugfs just gives no pool figures.
    """

    def __init__(self, root: Path = Path("/sys/kernel/debug"), journal: Path | None = None) -> None:
        self.root = root
        self.journal = journal
        self._mounted = False

    def _is_mounted(self) -> bool:
        return any(p == str(self.root) and t == "debugfs" for p, t, _ in _mounts())

    def __enter__(self) -> Debugfs:
        if not self._is_mounted():
            # Set first: an interrupted mount(8) may still have mounted it.
            self._mounted = True
            if self.journal is not None:
                self.journal.write_text(f"{os.getpid()} {self.root}\n", encoding="utf-8")
            try:
                _run_tool(["mount", "-t", "debugfs", "debugfs", str(self.root)])
            except MachineError:
                self._mounted = False
        return self

    def zswap_pool_bytes(self) -> int | None:
        try:
            return int(_read(self.root / "zswap" / "pool_total_size"))
        except (OSError, ValueError):
            return None

    def undo(self) -> None:
        if not self._mounted:
            return
        if self._is_mounted():
            try:
                _run_tool(["umount", str(self.root)])
            except MachineError:
                _run_tool(["umount", "-l", str(self.root)])  # busy: detach it now
        self._mounted = False
        if self.journal is not None:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()


# --------------------------------------------------------------------------
# one run at a time


class RunLock:
    """An exclusive lock: two runs would turn zswap on and off under each other.

    A second run waits for the first (up to `wait` seconds, saying so through
    `note`), then gives up with MachineError.
    """

    def __init__(
        self,
        path: Path = LOCK_PATH,
        wait: float = 0.0,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.wait = wait
        self.note = note
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise MachineError(
                        f"another zswap-rs versus is running (PID {holder}; lock {self.path})"
                    ) from None
                if self.note is not None and not told:
                    self.note(f"waiting for another zswap-rs versus to finish (PID {holder})")
                    told = True
                time.sleep(0.5)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


# --------------------------------------------------------------------------
# what a killed run left


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_leftovers(
    journal: Path = PARAMETERS_JOURNAL,
    swaps: Callable[[], list[SwapArea]] = active_swaps,
    debugfs_journal: Path = DEBUGFS_JOURNAL,
) -> list[str]:
    """Put back what a run killed by SIGKILL left: cgroups, swap file, debugfs, zswap parameters.

    Call with the run lock held: no live run then owns any of it (and only
    what names a process that is gone is touched). In that order, so that
    the killed run's job has ended before its swap file goes. Returns a line
    per thing put back; raises MachineError if one of them cannot be.
    """
    done = []
    try:
        _, hierarchy = find_memory_hierarchy()
        groups = sorted(hierarchy.iterdir())
    except (MachineError, OSError):
        groups = []
    for group in groups:
        m = LEFTOVER_NAME.match(group.name)
        if m is None or not group.is_dir() or not _dead(int(m.group(1))):
            continue
        with _shielded():
            MemoryCgroup.existing(group).undo()
        done.append(f"removed the cgroup {group.name} (its processes ended)")
    for area in swaps():
        directory = Path(area.path).parent
        m = LEFTOVER_NAME.match(directory.name)
        if m is None or not _dead(int(m.group(1))):
            continue
        with _shielded():
            _run_tool(["swapoff", area.path])
            shutil.rmtree(directory, ignore_errors=True)
        done.append(f"turned off and removed the swap file {area.path} of run {m.group(1)}")
    if debugfs_journal.exists():
        pid_text, _, where = debugfs_journal.read_text(encoding="utf-8").strip().partition(" ")
        if pid_text.isdigit() and _dead(int(pid_text)):
            mounted = Debugfs(Path(where), debugfs_journal)
            mounted._mounted = True
            with _shielded():
                mounted.undo()
            done.append(f"unmounted the debugfs run {pid_text} had mounted at {where}")
    if journal.exists():
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            root, saved, pid = Path(record["root"]), dict(record["saved"]), int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MachineError(
                f"cannot read {journal} (a killed run's zswap parameters): {e}"
            ) from None
        if not root.is_dir():
            journal.unlink()
        elif _dead(pid):
            params = ZswapParameters(root, journal)
            params.saved = saved
            with _shielded():
                params.undo()
            done.append(f"put back the zswap parameters run {pid} had changed")
    return done
