"""soak ``--tracemalloc DIR``: loaded (as ``sitecustomize``) by every Python the soak's
service starts; acts only in an ``orcha serve`` process and only if
``ORCHA_SOAK_TRACEMALLOC`` names a directory. There, a daemon thread writes every
``ORCHA_SOAK_TRACEMALLOC_EVERY`` seconds (default 30), from a first sample taken
``ORCHA_SOAK_TRACEMALLOC_WARMUP`` seconds (default 60) after start (past lazy imports),
``<pid>-<n>.txt``: traced memory, the top 25 allocation sites grown since the first
sample (by line, then the top 10 by traceback), and the 25 types whose live object count
grew most (``gc.get_objects()``); and ``<pid>-<n>.snapshot`` (``tracemalloc.Snapshot.load``)
to compare any two samples later. Bench only: never imported by product code.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def _native() -> str:
    """Memory outside Python objects: glibc malloc (mallinfo2), SQLite's own counter,
    pymalloc blocks, and the anonymous mappings of /proc/self/smaps by size."""
    parts = [f"py_blocks={sys.getallocatedblocks()}"]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        mi = libc.mallinfo2()
        parts.append(f"malloc: arena={mi.arena >> 10}kB used={mi.uordblks >> 10}kB "
                     f"free={mi.fordblks >> 10}kB mmapped={mi.hblkhd >> 10}kB")  # fmt: skip
    except (OSError, AttributeError):
        pass
    try:
        sq = ctypes.CDLL("libsqlite3.so.0")
        sq.sqlite3_memory_used.restype = ctypes.c_int64
        sq.sqlite3_memory_highwater.restype = ctypes.c_int64
        parts.append(f"sqlite: used={sq.sqlite3_memory_used() >> 10}kB "
                     f"high={sq.sqlite3_memory_highwater(0) >> 10}kB")  # fmt: skip
    except (OSError, AttributeError):
        pass
    groups: collections.Counter[str] = collections.Counter()
    name, size = "", 0
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                name, size = (fields[5] if len(fields) > 5 else ""), hi - lo
            elif fields[0] == "Anonymous:" and int(fields[1]):
                key = name or ("anon=1M(pymalloc arenas)" if size == 1 << 20 else
                               "anon<1M" if size < 1 << 20 else "anon>1M")  # fmt: skip
                groups[key] += int(fields[1])
    parts.append("anonymous kB: " + " ".join(f"{k}={v}" for k, v in groups.most_common(8)))
    return "\n".join(parts)


def _watch(out: str, every: float, warmup: float, frames: int) -> None:
    pid = os.getpid()
    time.sleep(warmup)  # past start-up and lazy imports
    gc.collect()
    with open(os.path.join(out, f"{pid}-000.txt"), "w") as f:
        f.write(f"t={warmup:.0f}s\n{_native()}\n")
    if not frames:  # only the native figures
        n = 0
        while True:
            time.sleep(every)
            n += 1
            with open(os.path.join(out, f"{pid}-{n:03d}.txt"), "w") as f:
                f.write(f"t={warmup + n * every:.0f}s\n{_native()}\n")
    first = tracemalloc.take_snapshot()
    first_types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    n = 0
    while True:
        time.sleep(every)
        n += 1
        gc.collect()
        snap = tracemalloc.take_snapshot()
        types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        cur, peak = tracemalloc.get_traced_memory()
        snap.dump(os.path.join(out, f"{pid}-{n:03d}.snapshot"))
        lines = [f"t={warmup + n * every:.0f}s traced={cur / 1024:.0f}kB peak={peak / 1024:.0f}kB"]
        lines.append(_native())
        lines.append("-- top 25 grown since first (by line)")
        for stat in snap.compare_to(first, "lineno")[:25]:
            lines.append(str(stat))
        lines.append("-- top 10 grown since first (by traceback)")
        for stat in snap.compare_to(first, "traceback")[:10]:
            lines.append(f"{stat.size_diff / 1024:+.1f} kB, count {stat.count_diff:+d}")
            lines.extend("    " + ln for ln in stat.traceback.format()[-16:])
        lines.append("-- object types grown since first")
        grown = [(k, types[k] - first_types.get(k, 0)) for k in types]
        grown.sort(key=lambda kv: -kv[1])
        lines.extend(f"{k}: {first_types.get(k, 0)} -> {types[k]} ({d:+d})" for k, d in grown[:25])
        with open(os.path.join(out, f"{pid}-{n:03d}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def _install() -> None:
    out = os.environ.get("ORCHA_SOAK_TRACEMALLOC")
    if not out or "serve" not in sys.argv[1:2]:
        return
    every = float(os.environ.get("ORCHA_SOAK_TRACEMALLOC_EVERY", "30"))
    warmup = float(os.environ.get("ORCHA_SOAK_TRACEMALLOC_WARMUP", "60"))
    frames = int(os.environ.get("ORCHA_SOAK_TRACEMALLOC_FRAMES", "16"))
    if frames:
        tracemalloc.start(frames)
    threading.Thread(
        target=_watch, args=(out, every, warmup, frames), daemon=True, name="soak-tracemalloc"
    ).start()


_install()
