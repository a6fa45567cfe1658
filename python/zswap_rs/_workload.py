"""The built-in workload that `zswap-rs profile` reads when given no --pid or --pages.

A profile is only as good as the memory it is run on, and a synthetic page
generator tells more about its author than about zswap. So the profiler starts
a real Python process that builds the kind of heap real programs have, and
reads that process's memory at its peak (see `_procmem`). The heap mixes, in
shares of `target_mb`:

- an index dict of str -> int and a list of small record dicts (pymalloc
  arenas full of object headers, pointers and short strings: what most
  Python services hold);
- floats, both boxed in a list and packed in an array (numeric data
  compresses far worse than text);
- text built from a word list (log lines, documents: compresses well);
- bytes blobs of random content (compressed images, encrypted data: zswap
  rejects these as poorly compressible) and of repeated content (templates,
  protocol buffers: compresses very well);
- zero-filled and one-value-filled arrays, written so that their pages are
  really resident (zeroed buffers, preallocated arrays: the same-filled
  pages zswap stores without compressing).

Deterministic: everything comes from `random.Random(seed)`, and the parent
fixes the child's string hash seed (dict layout) and, where the kernel lets
it, turns off address space randomisation (pointer values in the heap), so
that two runs give comparable pages. It builds 150 MB in a few seconds.

Protocol: run as a script (`python _workload.py --mb 150 --seed 0`), it
builds its heap, writes "ready\\n" to stdout, and waits until a line arrives
on stdin or stdin closes, then exits. `WorkloadProcess` is the parent's side.
This file imports nothing outside the standard library, so that the child
does not load the compiled module into the heap it is meant to stand for.
"""

from __future__ import annotations

import argparse
import array
import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["WorkloadError", "WorkloadProcess", "build_heap", "main"]

#: Shares of the heap, by kind, in percent of the target size.
SHARES = {
    "index": 18,
    "records": 14,
    "floats": 14,
    "float_array": 8,
    "text": 18,
    "random_blobs": 8,
    "repeated_blobs": 8,
    "zeros": 8,
    "filled": 4,
}
#: Approximate heap bytes per item, measured on CPython 3.11 (64-bit):
#: a dict entry with a fresh ~20-char str key and a non-cached int is about
#: 130 bytes with the table's own slack; a 4-field record dict about 420;
#: a boxed float 24 + an 8-byte list slot.
_INDEX_ENTRY_BYTES = 130
_RECORD_BYTES = 420
_BOXED_FLOAT_BYTES = 32

WORDS = (
    "the of and to in is was for that with as on by at from his her an be are "
    "it this which or had not but have were they one all their been has more "
    "when who will would there no can out up if about into said time some only "
    "other new what could than its after two first these may any most over like "
    "also made did many before such through where must back years well much "
    "memory page pool swap compress store load entry handle tree offset kernel "
    "process thread queue buffer cache writeback reclaim allocate object class "
    "request response server client error warning info debug user session token "
    "value index record field table column row query result status ok failed"
).split()


def build_heap(target_mb: int = 150, seed: int = 0) -> dict[str, object]:
    """Build a heap of about `target_mb` MiB; return it, so that it stays alive."""
    rng = random.Random(seed)
    budget = target_mb << 20

    def share(kind: str) -> int:
        return budget * SHARES[kind] // 100

    heap: dict[str, object] = {}

    n = share("index") // _INDEX_ENTRY_BYTES
    words = WORDS
    heap["index"] = {
        f"{rng.choice(words)}:{rng.choice(words)}:{i:07d}": rng.getrandbits(40) for i in range(n)
    }

    n = share("records") // _RECORD_BYTES
    heap["records"] = [
        {
            "id": i,
            "name": f"{rng.choice(words).title()} {rng.choice(words).title()}",
            "score": rng.random() * 100.0,
            "tags": [rng.choice(words) for _ in range(3)],
        }
        for i in range(n)
    ]

    n = share("floats") // _BOXED_FLOAT_BYTES
    heap["floats"] = [rng.gauss(0.0, 1.0) for _ in range(n)]

    n = share("float_array") // 8
    heap["float_array"] = array.array("d", (rng.random() * 1000.0 for _ in range(n)))

    # Text: log-like lines of 6-16 words, in 64 KiB documents.
    text: list[str] = []
    left = share("text")
    while left > 0:
        lines = []
        size = 0
        while size < 65536:
            line = " ".join(rng.choices(words, k=rng.randint(6, 16)))
            line = f"{rng.randint(0, 86399):05d} {line}\n"
            lines.append(line)
            size += len(line)
        text.append("".join(lines))
        left -= size
    heap["text"] = text

    blob = 256 << 10
    heap["random_blobs"] = [rng.randbytes(blob) for _ in range(share("random_blobs") // blob)]

    # Repeated content: a random record of 24-200 bytes repeated to fill a blob.
    repeated = []
    for _ in range(share("repeated_blobs") // blob):
        unit = rng.randbytes(rng.randint(24, 200))
        repeated.append((unit * (blob // len(unit) + 1))[:blob])
    heap["repeated_blobs"] = repeated

    # bytearray(1) * n is a memset over freshly malloc'd memory: every page is
    # written, so resident, unlike bytearray(n), which the kernel leaves
    # unmapped until touched.
    heap["zeros"] = [bytearray(1) * blob for _ in range(max(1, share("zeros") // blob))]
    # One 64-bit value repeated: same-filled, but not zero.
    heap["filled"] = [
        array.array("q", [0x0101010101010101 * (k % 7 + 1)]) * (blob // 8)
        for k in range(max(1, share("filled") // blob))
    ]
    return heap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=150, help="heap size in MiB (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    heap = build_heap(args.mb, args.seed)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    # Skip freeing the heap object by object: the process is done.
    sys.stdout.flush()
    os._exit(0 if heap else 1)


class WorkloadError(Exception):
    """The workload process could not be started or did not get ready."""


def _disable_aslr() -> Callable[[], None] | None:
    """A preexec_fn that turns off ASLR in the child (best effort), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        personality = ctypes.CDLL(None, use_errno=True).personality
    except (OSError, AttributeError):
        return None
    personality.argtypes = [ctypes.c_ulong]
    personality.restype = ctypes.c_int
    addr_no_randomize = 0x0040000
    query = 0xFFFFFFFF

    def preexec() -> None:
        current = personality(query)
        if current != -1:
            personality(current | addr_no_randomize)

    return preexec


class WorkloadProcess:
    """The built-in workload as a child process, from start to end.

    Use as a context manager: entering starts the child and waits until its
    heap is built (`pid` is then the process to read); leaving always ends it,
    also on error or KeyboardInterrupt.
    """

    def __init__(self, mb: int = 150, seed: int = 0, ready_timeout: float = 120.0) -> None:
        self.mb = mb
        self.seed = seed
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        #: Has the child said "ready" (its heap is built)?
        self.ready = False
        self.build_seconds = 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise WorkloadError("the workload is not running")
        return self.proc.pid

    def start(self) -> None:
        """Start the child and wait until its heap is built."""
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = str(self.seed)
        env.pop("PYTHONMALLOC", None)  # a debug allocator would change every page
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--mb",
                str(self.mb),
                "--seed",
                str(self.seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_disable_aslr(),
        )
        self.ready = False
        try:
            self._wait_ready(started + self.ready_timeout)
            self.ready = True
        except BaseException:
            # Including KeyboardInterrupt: the context manager's __exit__ does
            # not run when __enter__ fails, so end the child here.
            self.stop()
            raise
        self.build_seconds = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        line = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkloadError(
                    f"the built-in workload was not ready after {self.ready_timeout:.0f} s"
                )
            readable, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if readable:
                line = proc.stdout.readline()
                break
            if proc.poll() is not None:
                break
        if line != b"ready\n":
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            err = ""
            if code is not None and proc.stderr is not None:
                err = proc.stderr.read().decode(errors="replace")
            tail = "\n".join(err.strip().splitlines()[-5:])
            raise WorkloadError(
                f"the built-in workload exited with code {code} before it was ready"
                + (f":\n{tail}" if tail else "")
            )

    def stop(self) -> None:
        """End the child. Idempotent.

        A ready child is asked to exit (stdin closed) and killed if it has not
        within 5 s; one still building its heap is of no use to anyone and is
        killed at once (Ctrl-C during the build should not wait for it).
        """
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None and not self.ready:
                proc.kill()
            elif proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
            self.proc = None

    def __enter__(self) -> WorkloadProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
