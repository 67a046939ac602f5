"""Where a 10,000-step run's driver memory goes: the suite's w5 in one process, broken down.

Runs the suite's raypipe system (``peers/sys_raypipe.py``: its defaults, tracking on or
off) on w5 (a fan-out of 100 chains of 100 steps) once after a 4-step warm-up, as the
suite's worker does, and reports:

- the peak growth of the driver's resident memory over its value just before the run
  (sampled every 2 ms: the suite's figure) and its course, every half second;
- what grew by the end of the run: the C library's heaps (``mallinfo2``: in use and free,
  i.e. held but unused), its main heap (``[heap]``) and its thread heaps (64 MB mappings),
  other anonymous memory (Python's object arenas, Arrow's mimalloc, Ray's own), and how
  much ``malloc_trim(0)`` then gives back.

Allocator settings are read from the environment when the process starts, so compare them
by running this script under each, for example ``MIMALLOC_ALLOW_THP=0`` (Arrow's mimalloc
without transparent huge pages) or ``ARROW_DEFAULT_MEMORY_POOL=system``.

Example:
    cd benchmarks && NUMPY_MADVISE_HUGEPAGE=0 python w5_memory.py --tracking on
    cd benchmarks && python w5_memory.py --tracking on --merge-parts 1000000  # no merge
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import sys
import tempfile
import threading
import time

import psutil
from peers.sys_raypipe import Raypipe
from peers.workloads import Size

_MIB = 1 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 (ctypes wants a plain list)
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc


def _mappings() -> dict[str, int]:
    """Resident KB by kind of mapping, from ``/proc/self/smaps``."""
    kinds: dict[str, int] = {}
    kind = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                name = fields[5] if len(fields) > 5 else ""
                if name == "[heap]":
                    kind = "C library main heap"
                elif name:
                    kind = None  # files and the rest: not what a run grows
                elif end - start <= 64 * _MIB and start % (64 * _MIB) == 0:
                    kind = "C library thread heaps"
                else:
                    kind = "other anonymous (Python arenas, mimalloc, Ray)"
            elif fields[0] == "Rss:" and kind is not None:
                kinds[kind] = kinds.get(kind, 0) + int(fields[1])
    return kinds


def _state(libc: ctypes.CDLL) -> dict[str, int]:
    info = libc.mallinfo2()
    return {
        "resident": psutil.Process().memory_info().rss >> 10,
        "C library: in use": info.uordblks >> 10,
        "C library: free, held": info.fordblks >> 10,
        **_mappings(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking", choices=["on", "off"], default="on")
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--merge-parts",
        type=int,
        help="the lineage writer's merge_parts (default: its own); a large number: no merge",
    )
    args = parser.parse_args()
    if args.merge_parts is not None:
        from raypipe.tracking.lineage import LineageWriter

        # the default observers make their writer with its defaults: change the default
        LineageWriter.__init__ = functools.partialmethod(  # type: ignore[method-assign]
            LineageWriter.__init__, merge_parts=args.merge_parts
        )
    libc = _libc()
    system = Raypipe(tracking=args.tracking == "on")
    with tempfile.TemporaryDirectory(prefix="raypipe-w5-memory-") as workdir:
        system.setup(workdir)
        try:
            warm = system.build("w5", Size(width=2, steps=2))
            warm.run()
            run = system.build("w5", Size(width=args.width, steps=args.steps))
            gc.collect()
            before = _state(libc)
            series: list[tuple[float, int]] = []
            done = threading.Event()
            process = psutil.Process()

            def sample() -> None:
                while not done.wait(0.002):
                    series.append((time.perf_counter(), process.memory_info().rss >> 10))

            sampler = threading.Thread(target=sample, daemon=True)
            started = time.perf_counter()
            sampler.start()
            result = run.run()
            seconds = time.perf_counter() - started
            done.set()
            sampler.join()
            after = _state(libc)
            trim_started = time.perf_counter()
            libc.malloc_trim(0)
            trim_ms = (time.perf_counter() - trim_started) * 1e3
            trimmed = _state(libc)
            del result
        finally:
            system.teardown()
    steps = args.width * args.steps
    peak = max(rss for _, rss in series) - before["resident"]
    print(
        f"w5 {args.width}x{args.steps}, tracking {args.tracking}: {seconds:.2f} s; "
        f"driver peak growth {peak / 1024:.1f} MB, {peak * 1024 / steps:.0f} bytes a step"
    )
    course, due = [], started
    for at, rss in series:
        if at >= due:
            course.append(f"{at - started:.1f}s {(rss - before['resident']) / 1024:+.1f}")
            due += 0.5
    print("  resident growth (MB) as the run went:", ", ".join(course))
    print("  grown by the end of the run (MB):")
    for key in dict.fromkeys([*before, *after]):
        grown = after.get(key, 0) - before.get(key, 0)
        print(f"    {key:48s} {grown / 1024:+7.1f}")
    given_back = after["resident"] - trimmed["resident"]
    print(f"  malloc_trim(0) then gave back {given_back / 1024:.1f} MB in {trim_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
