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


def _read_toml(path: Path) -> dict:
    import tomllib

    if not path.is_file():
        raise CLIError(f"{path}: no such configuration file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path}: not valid TOML ({exc})") from None


def _chip(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from crossbar import Chip

    return Chip(args.profile, _load_chip_config(args.config), seed=args.seed)


def _cmd_characterize(args: argparse.Namespace) -> int:
    from crossbar.characterization import CharacterizationProtocol, characterize
    from crossbar.characterization_io import write_characterization
    from crossbar.plots import plot_drift

    chip = _chip(args)
    out = Path(args.out)
    if out.suffix not in (".h5", ".hdf5"):
        raise CLIError(f"--out {out}: expected an .h5 file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    n_inputs = 512 if args.quick else args.inputs
    sweeps = {} if args.sweeps and not args.quick else {"times_sec": (), "temperatures_kelvin": ()}
    protocol = CharacterizationProtocol(
        n_inputs=max(n_inputs, 2 * chip.config.tile.rows), n_repeats=args.repeats,
        n_sweep_inputs=max(256, n_inputs // 8), seed=args.seed, **sweeps,
    )
    print(f"characterizing a {chip.profile.name} chip: {protocol.n_inputs} vectors x {protocol.n_repeats} reads per probe matrix"
          + ("" if sweeps else ", drift and temperature sweeps"), flush=True)
    char = characterize(chip, protocol=protocol, progress=args.progress)
    write_characterization(out, char)
    print(char.summary())
    written = [out]
    if not sweeps:
        written.append(plot_drift(char, out.with_name(out.stem + "_drift.png")))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _train_options(args: argparse.Namespace) -> dict:
    hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else None
    out: dict = {"profile": args.profile, "seed": args.seed, "dataset": args.dataset if args.data else "embedded_mnist",
                 "data_dir": None if args.data is None else str(args.data)}
    if hidden is not None:
        out["hidden"] = hidden
    if args.epochs is not None:
        out["epochs"] = args.epochs
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from crossbar.characterization_io import read_surrogate_params
    from training.calibration import CalibrationMode, train_with_calibration
    from training.models import MLP
    from training.pipeline import RunConfig, load_dataset, recipe_for, save_trained_mlp
    from training.trainer import LRSchedule, TrainConfig, Trainer

    base = RunConfig.quick() if args.quick else RunConfig()
    try:
        run = dataclasses.replace(base, chip=_load_chip_config(args.config), **_train_options(args))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    chip = _chip(args)
    splits = load_dataset(run.dataset, run.data_dir)
    train = splits.train if run.n_train is None else splits.train.subset(slice(0, run.n_train))
    test = splits.test if run.evaluation.n_test is None else splits.test.subset(slice(0, run.evaluation.n_test))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = (int(train.images[0].numel()), *run.hidden, train.n_classes)
    model = MLP(sizes, activation=run.activation, generator=torch.Generator().manual_seed(run.seed))
    config = TrainConfig(epochs=run.epochs, batch_size=run.batch_size, learning_rate=run.learning_rate,
                         lr_schedule=LRSchedule.COSINE, seed=run.seed)
    pi_hw = None
    if args.method == "physics_informed":
        if args.characterization is None:
            raise CLIError("--method physics_informed needs --characterization FILE (pi_hw, from `crossbar characterize`)")
        from crossbar.characterization_io import read_characterization

        pi_hw = read_characterization(args.characterization).pi_hw
    recipe = recipe_for(args.method, args.strength, pi_hw=pi_hw)
    print(f"training {model.extra_repr()} with `{args.method}` (strength {args.strength:g}) on {train.name}, "
          f"{run.epochs} epochs, calibration `{args.calibration}`, into {out}", flush=True)
    records: list = []
    if args.calibration == "none":
        trainer = Trainer(model, train, config=config, recipe=recipe, eval_data=test, checkpoint_path=out / "checkpoint.pt",
                          progress=args.progress)
        history = trainer.fit()
        trained = model
    else:
        initial = None if args.characterization is None else read_surrogate_params(args.characterization)
        calibration = dataclasses.replace(run.calibration, mode=CalibrationMode(args.calibration))
        result = train_with_calibration(model, train, chip, train_config=config, recipe=recipe, calibration=calibration,
                                        initial_params=initial, eval_data=test, run_dir=out, progress=args.progress)
        history, trained, records = result.history, result.model, result.records
    meta = {"method": args.method, "strength": args.strength, "calibration": args.calibration, "profile": chip.profile.name,
            "seed": run.seed, "epochs": run.epochs, "dataset": run.dataset.value, "data_dir": run.data_dir,
            "test_accuracy_per_epoch": history.eval_accuracy, "argv": args.argv}
    save_trained_mlp(out, trained, meta)
    print(f"test accuracy after each epoch: {', '.join(f'{100 * a:.1f}' for a in history.eval_accuracy)} %")
    for r in records:
        if r.gap is not None:
            print(f"  calibration at epoch {r.epoch}: surrogate {100 * r.surrogate_accuracy:.1f} %, chip "
                  f"{100 * r.chip_accuracy:.1f} %")
    print(f"wrote {out / 'model.pt'}, {out / 'model.json'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from training.pipeline import RunConfig, evaluate_on_chip, load_dataset, load_trained_mlp, write_evaluation

    model, meta = load_trained_mlp(args.model)
    chip = _chip(args)
    base = RunConfig.quick() if args.quick else RunConfig()
    run = dataclasses.replace(base, profile=args.profile, chip=chip.config, seed=args.seed,
                              dataset=meta.get("dataset", "embedded_mnist") if args.data is None else args.dataset,  # type: ignore[arg-type]
                              data_dir=meta.get("data_dir") if args.data is None else str(args.data))
    evaluation = run.evaluation
    if args.chips is not None or args.reads is not None:
        evaluation = dataclasses.replace(evaluation, n_chips=args.chips or evaluation.n_chips, n_reads=args.reads or evaluation.n_reads)
    test = load_dataset(run.dataset, run.data_dir).test
    print(f"evaluating {args.model} on {evaluation.n_chips} programmings x {evaluation.n_reads} reads of a "
          f"{chip.profile.name} chip ...", flush=True)
    name = Path(args.model).name or "model"
    ev = evaluate_on_chip(model, test, chip, evaluation, seed=args.seed)
    paths = write_evaluation(args.out, chip, dataclasses.replace(run, evaluation=evaluation), {name: ev})
    t_last = ev.time.levels[-1]
    print(f"digital {100 * ev.clean_digital:.1f} %; on the chip at {ev.time.levels[0]:g} s "
          f"{100 * ev.time.at(ev.time.levels[0])[0]:.1f} %, after {t_last:g} s {100 * ev.time.at(t_last)[0]:.1f} % "
          f"({100 * ev.time_compensated.at(t_last)[0]:.1f} % with drift compensation)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    from training.pipeline import RunConfig, run_main_job

    base = RunConfig.quick() if args.quick else RunConfig()
    if args.config is not None:
        data = _read_toml(args.config)
        base = RunConfig.from_dict(data, base=base, origin=str(args.config))
    changes = {k: v for k, v in (("profile", args.profile), ("seed", args.seed)) if v is not None}
    if args.data is not None:
        changes.update(data_dir=str(args.data), dataset=args.dataset)
    try:
        config = dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    run_main_job(config, args.out, argv=args.argv, progress=args.progress)
    return 0


def _add_chip_options(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    p.add_argument("--profile", default="pcm", help="shipped profile name or path to a .toml file (default: pcm)")
    p.add_argument("--config", type=Path, help="TOML file whose [chip] table configures the chip (tile, dac, adc, stages, ...)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of the chip and of every draw (default 0)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="directory of MNIST / Fashion-MNIST IDX files (default: the embedded MNIST subset)")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"], help="what --data holds (default mnist)")


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

    p = sub.add_parser("characterize", help="measure a chip's noise like a real one and fit its surrogate; writes HDF5")
    _add_chip_options(p)
    p.add_argument("--inputs", type=int, default=8192, help="input vectors per probe matrix (default 8192)")
    p.add_argument("--repeats", type=int, default=4, help="reads of every vector (default 4)")
    p.add_argument("--no-sweeps", dest="sweeps", action="store_false", help="skip the drift and temperature sweeps")
    p.add_argument("--quick", action="store_true", help="512 vectors, no sweeps (seconds)")
    p.add_argument("--out", default="results/characterization.h5", help="output file (default results/characterization.h5)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars (logs, notebooks)")
    p.set_defaults(func=_cmd_characterize)

    from training.pipeline import Method

    p = sub.add_parser("train", help="train an MLP with a robustness method against the chip (resumable)")
    _add_chip_options(p)
    _add_data_options(p)
    p.add_argument("--method", default="standard", choices=[m.value for m in Method], help="robustness recipe (default standard)")
    p.add_argument("--strength", type=float, default=0.1, help="the method's strength knob (default 0.1; see training.pipeline.Method)")
    p.add_argument("--calibration", default="calibrated", choices=["none", "surrogate_only", "calibrated", "chip_in_the_loop"],
                   help="how the chip takes part: none (digital training), surrogate_only, calibrated (default), chip_in_the_loop")
    p.add_argument("--characterization", type=Path, help="characterization file whose surrogate starts the training")
    p.add_argument("--hidden", help="hidden widths, comma-separated (default 300,300)")
    p.add_argument("--epochs", type=int, help="epochs (default 8)")
    p.add_argument("--quick", action="store_true", help="small model and data, seconds")
    p.add_argument("--out", default="results/train", help="output folder; an interrupted run there resumes (default results/train)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars (logs, notebooks)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained model on the chip: drift, temperature, device and activation noise")
    p.add_argument("model", help="output folder of `crossbar train`")
    _add_chip_options(p)
    _add_data_options(p)
    p.add_argument("--chips", type=int, help="programmings per point (default 3)")
    p.add_argument("--reads", type=int, help="reads per programming (default 2)")
    p.add_argument("--quick", action="store_true", help="few points and samples, seconds")
    p.add_argument("--out", default="results/evaluate", help="output folder (default results/evaluate)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("run", help="the main job: characterize, train a standard and a robust model, evaluate on the chip")
    p.add_argument("--config", type=Path, help="TOML file with run settings ([chip], [calibration], [evaluation] tables, ...)")
    p.add_argument("--profile", help="shipped profile name or path (default pcm)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    _add_data_options(p)
    p.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    p.add_argument("--out", default="results/run", help="results folder; an interrupted run there resumes (default results/run)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars (logs, notebooks)")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crossbar`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the results of a run
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
