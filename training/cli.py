"""The ``crossbar`` command: one console script with subcommands; no logic here, only dispatch.

Every subcommand returns an exit status; errors are one clear line on stderr (exit 2), an interrupt
exits 130 after whatever finished was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

__all__ = ["main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_profiles(args: argparse.Namespace) -> int:
    from crossbar import list_profiles, load_profile

    if args.name is None:
        for name in list_profiles():
            p = load_profile(name)
            print(f"{name:<12} {p.technology}")
        return 0
    p = load_profile(args.name)
    print(p.toml_text if args.toml else _describe_profile(p))
    return 0


def _describe_profile(p) -> str:  # type: ignore[no-untyped-def]
    lines = [f"{p.name}: {p.technology}", f"  {p.description}", ""]
    for group in ("conductance", "programming", "faults", "read_noise", "drift", "temperature", "iv"):
        obj = getattr(p, group)
        values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in vars(obj).items())
        lines.append(f"  [{group}] {values}")
    lines.append("")
    lines.append("  sources:")
    for key, ref in p.source.references.items():
        lines.append(f"    {key}: {ref}")
    return "\n".join(lines)


def _load_chip_config(path: Path | None):  # type: ignore[no-untyped-def]
    import tomllib

    from crossbar.config import ChipConfig, config_from_dict

    if path is None:
        return ChipConfig()
    if not path.is_file():
        raise CLIError(f"{path}: no such configuration file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(data.get("chip", {}), origin=str(path))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from crossbar.config import config_to_dict
    from crossbar.plots import plot_mvm_study
    from crossbar.studies import mvm_error_study

    config = _load_chip_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size, batch, repeats = (64, 32, 2) if args.quick else (args.size, args.batch, args.repeats)
    print(f"MVM error study of {args.profile}: W {size}x{size}, batch {batch}, {repeats} chips per point", flush=True)
    result = mvm_error_study(
        args.profile,
        config=config,
        size=size,
        batch=batch,
        repeats=repeats,
        seed=args.seed,
        progress=lambda msg: print(f"  sweep: {msg}", flush=True),
    )
    record = {"study": result.to_json(), "chip_config": config_to_dict(config), "argv": sys.argv[1:]}
    (out / "mvm_study.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    png = plot_mvm_study(result, out / "mvm_study.png")
    (out / "summary.md").write_text(f"# MVM error study: {result.profile}\n\n![sweeps]({png.name})\n\n{result.table_markdown()}\n", encoding="utf-8")
    print(f"wrote {out / 'mvm_study.json'}, {png}, {out / 'summary.md'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossbar", description="Simulate analog in-memory-computing crossbar chips and train networks against them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("profiles", help="list the shipped device profiles, or show one")
    p.add_argument("name", nargs="?", help="profile name or path to a .toml file")
    p.add_argument("--toml", action="store_true", help="print the profile's TOML text (with its sources)")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("simulate", help="MVM error study of a profile: error vs time, temperature, bits, tile size")
    p.add_argument("--profile", default="pcm", help="shipped profile name or path to a .toml file (default: pcm)")
    p.add_argument("--config", type=Path, help="TOML file whose [chip] table configures the chip (tile, dac, adc, stages, ...)")
    p.add_argument("--size", type=int, default=256, help="W is size x size (default 256)")
    p.add_argument("--batch", type=int, default=256, help="input vectors per point (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="chips (seeds) per point (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--out", default="results/simulate", help="output folder (default results/simulate)")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crossbar`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted: finished results and checkpoints are kept", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
