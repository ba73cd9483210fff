"""Render ``benchmarks/results.json`` as the markdown tables of README.md.

Usage: ``python -m benchmarks.report [PATH]`` prints one table per record group (the name's first word:
``mvm``, ``irdrop``, ``bridge``, ...) with the machine and versions the numbers were measured on.
README's benchmark tables are pasted from this output, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]

DEFAULT_PATH = Path(__file__).resolve().parent / "results.json"


def _fmt(value: Any, unit: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if unit == "s":
            if v < 1e-3:
                return f"{v * 1e6:.1f} us"
            if v < 1.0:
                return f"{v * 1e3:.2f} ms"
            return f"{v:.2f} s"
        if unit == "bytes":
            return f"{v / 2**20:.0f} MiB"
        return f"{v:.3g}"
    return str(value)


def render(results: dict[str, Any], exclude: tuple[str, ...] = ()) -> str:
    """Markdown tables of a results object ``{"machine", "versions", "records"}``, without the groups
    named in ``exclude``."""
    machine = results.get("machine", {})
    versions = results.get("versions", {})
    lines = [
        f"Measured in `{results.get('mode', '?')}` mode on {machine.get('cpu', '?')} "
        f"({machine.get('cpu_count', '?')} cores), Python {machine.get('python', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in results.get("records", []):
        if rec["name"].split("_", 1)[0] in exclude:
            continue
        groups.setdefault(rec["name"].split("_", 1)[0], []).append(rec)
    for group, recs in groups.items():
        lines += [f"**{group}**", "", "| record | value | baseline | baseline value | ratio | target | met |", "|---|---|---|---|---|---|---|"]
        for r in recs:
            unit = r.get("unit")
            value = _fmt(r.get("value"), unit)
            if unit not in ("s", "bytes") and unit:
                value = f"{value} {unit}"
            lines.append(
                f"| `{r['name']}` | {value} | {r.get('baseline') or ''} | {_fmt(r.get('baseline_value'), unit)} | "
                f"{_fmt(r.get('ratio'))} | {_fmt(r.get('target'))} | {_fmt(r.get('meets_target'))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"results file (default {DEFAULT_PATH})")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="GROUP", help="leave out these record groups (e.g. mnist)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    print(render(results, tuple(args.exclude)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
