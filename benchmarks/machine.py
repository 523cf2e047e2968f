"""What the figures were measured on: hardware, software versions, BLAS, and the tree's commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.servers import REPO

_PACKAGES = (
    "numpy",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "uvicorn",
    "uvloop",
    "httptools",
    "scipy",
    "scikit-learn",
    "torch",
    "threadpoolctl",
)


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip().strip('"')
    except OSError:
        return None
    return None


def _blas() -> str:
    """The BLAS NumPy was built with, and what threadpoolctl sees loaded at run time."""
    import numpy as np

    parts = []
    try:
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        parts.append(f"built with {blas.get('name')} {blas.get('version')}")
    except (TypeError, KeyError):
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "; ".join(parts) or "unknown"
    for pool in threadpool_info():
        details = [f"{pool.get('num_threads')} threads"]
        if pool.get("architecture"):
            details.append(f"core type {pool['architecture']}")
        library = Path(str(pool.get("filepath", ""))).name
        parts.append(f"loaded {library} ({pool.get('internal_api')} {pool.get('version') or ''}".rstrip() + ", ")
        parts[-1] += ", ".join(details) + ")"
    return "; ".join(parts)


def _simd() -> str:
    """NumPy's SIMD extensions (``numpy.show_runtime()``): its float64 ``exp`` and ``log`` are vectorised only
    with AVX-512 ("X86_V4" / "AVX512F" found), scalar elsewhere, so core figures depend on this line."""
    try:
        from numpy._core._multiarray_umath import (  # type: ignore[attr-defined]
            __cpu_baseline__,
            __cpu_dispatch__,
            __cpu_features__,
        )
    except ImportError:
        return "unknown"
    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    missing = [f for f in __cpu_dispatch__ if not __cpu_features__.get(f)]
    return (
        f"baseline {', '.join(__cpu_baseline__) or '—'}; found {', '.join(found) or '—'}; "
        f"not found {', '.join(missing) or '—'}"
    )


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "service")
    return f"{commit}" + (" with uncommitted changes in service/" if dirty else "")


def describe() -> list[tuple[str, str]]:
    """(what, value) rows for the RESULTS.md machine table."""
    memory_kb = _first("/proc/meminfo", "MemTotal")
    memory = f"{int(memory_kb.split()[0]) / 1024**2:.1f} GiB" if memory_kb else "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions = []
    for package in _PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return [
        ("CPU", _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown"),
        ("NumPy SIMD extensions", _simd()),
        ("Cores", f"{os.cpu_count()} logical, {usable} usable by this process (shared machine)"),
        ("Memory", memory),
        ("OS", f"{_first('/etc/os-release', 'PRETTY_NAME') or platform.system()}, kernel {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Packages", ", ".join(versions)),
        ("BLAS", _blas()),
        ("OPENBLAS_CORETYPE", os.environ.get("OPENBLAS_CORETYPE", "not set")),
        ("xent tree", _git()),
    ]
