"""Run every benchmark and write ``benchmarks/results.json``.

Usage: ``python -m benchmarks [--quick] [--only NAME ...] [--out PATH]``. ``--quick`` is the reduced set
(about two minutes on 2 cores); the full set may take much longer. The JSON object is
``{"machine": {...}, "versions": {...}, "records": [...]}`` with records as in
:class:`benchmarks._harness.Record`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crossbar import _threadenv

MODULES = [
    "benchmarks.bench_mvm",
    "benchmarks.bench_bridge",
    "benchmarks.bench_training",
    "benchmarks.bench_irdrop",
    "benchmarks.bench_characterization",
]
"""Benchmark modules, run in this order. Each exposes ``run(quick: bool) -> list[Record]``."""

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "thread_env": {name: os.environ.get(name) for name in (*_threadenv.SETTINGS, "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
    }


def _versions() -> dict[str, str]:
    out = {}
    for name in ("crossbar", "numpy", "numba", "scipy", "torch", "h5py"):
        try:
            module = importlib.import_module(name)
            out[name] = str(getattr(module, "__version__", "unknown"))
        except ImportError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced set, about two minutes on 2 cores")
    parser.add_argument("--only", nargs="+", metavar="MODULE", help="run only these modules (e.g. bench_mvm)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    modules = MODULES
    if args.only:
        wanted = {m if m.startswith("benchmarks.") else f"benchmarks.{m}" for m in args.only}
        unknown = wanted - set(MODULES)
        if unknown:
            print(f"error: unknown benchmark module(s) {sorted(unknown)}; known: {MODULES}", file=sys.stderr)
            return 2
        modules = [m for m in MODULES if m in wanted]

    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in modules:
        t0 = time.perf_counter()
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", flush=True)
        module = importlib.import_module(name)
        for rec in module.run(quick=args.quick):
            records.append(rec.to_json())
            ratio = f" ratio={rec.ratio:.3g}" if rec.ratio is not None else ""
            target = "" if rec.meets_target is None else (" target met" if rec.meets_target else " TARGET MISSED")
            print(f"  {rec.name:<44} {rec.value:.4g} {rec.unit}{ratio}{target}", flush=True)
        print(f"[{name}] done in {time.perf_counter() - t0:.1f} s", flush=True)

    result = {
        "machine": _machine(),
        "versions": _versions(),
        "mode": "quick" if args.quick else "full",
        "wall_time_sec": round(time.perf_counter() - started, 1),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # atomic write: a crash never leaves a half-written results file
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(records)} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
