"""The ``sdkd`` command line: one subcommand per pipeline step.

Every step takes the config and explicit output paths (Snakemake hands them over);
nothing here invents a path. Bad input ends with one ``sdkd: error: ...`` line and
exit status 2; a finished output is only ever replaced atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from sdkd import __version__
from sdkd import config as configuration
from sdkd.errors import SdkdError, os_error_message
from sdkd.hardware import limit_thread_pools
from sdkd.plan import results_root

log = logging.getLogger("sdkd")


def _cmd_check_config(args: argparse.Namespace) -> None:
    config = configuration.load(args.config)
    names = ", ".join(config["datasets"])
    # where `snakemake --configfile` of it writes (sdkd.plan.results_root)
    print(f"{args.config}: valid (datasets: {names}; results in {results_root(config)}/)")


def _cmd_sources(args: argparse.Namespace) -> None:
    import textwrap

    from sdkd.data.sources import catalogue

    for row in catalogue():
        print(f"{row['name']}  ({row['route']}, layout {row['layout']})")
        for key in ("description", "size", "licence"):
            text = row[key] if key == "description" else f"{key}: {row[key]}"
            print(textwrap.fill(text, width=88, initial_indent="  ",
                                subsequent_indent="    "))
        print()


def _cmd_models(args: argparse.Namespace) -> None:
    import json

    from sdkd.models.stats import model_table

    shape = {"height": args.height, "width": args.width, "in_steps": args.in_steps,
             "out_steps": args.out_steps, "channels": args.channels}
    rows = model_table(**shape)
    if args.json:
        print(json.dumps({"input": shape, "models": rows}, indent=2))
        return
    print(f"{args.height}×{args.width} grid, {args.in_steps} → {args.out_steps} frames, "
          f"{args.channels} channel(s); forward GFLOPs per sample (2 per multiply-add)")
    table = [("model", "role", "provider", "parameters", "GFLOPs")] + [
        (r["model"], r["role"], r["provider"], f"{r['parameters']:,}",
         f"{r['flops_per_sample'] / 1e9:.4g}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:  # text left-aligned, numbers right-aligned
        print("  ".join([*(c.ljust(n) for c, n in zip(row[:3], widths[:3], strict=True)),
                         *(c.rjust(n) for c, n in zip(row[3:], widths[3:], strict=True))]))


def _cmd_acquire(args: argparse.Namespace) -> None:
    from sdkd.data.acquire import acquire

    config = configuration.load(args.config)
    dataset = configuration.dataset_config(config, args.dataset)
    path = acquire(dataset, args.out, name=args.dataset, seed=config["seed"],
                   max_gib=config["limits"]["max_array_gib"])
    if path is None:
        log.info("%s reads its file(s) in place: checked, nothing to acquire", args.dataset)
    else:
        log.info("acquired %s → %s", args.dataset, path)


def _cmd_preprocess(args: argparse.Namespace) -> None:
    from sdkd.data.preprocess import preprocess

    config = configuration.load(args.config)
    dataset = configuration.dataset_config(config, args.dataset)
    path = preprocess(args.raw, args.out, dataset, name=args.dataset,
                      max_gib=config["limits"]["max_array_gib"])
    log.info("preprocessed %s → %s", args.dataset, path)


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from sdkd.train.jobs import train_teacher

    config = configuration.load(args.config)
    configuration.dataset_config(config, args.dataset)
    result = train_teacher(config, args.dataset, args.data, args.out, device=args.device)
    log.info("teacher of %s: best val %.4g at epoch %d → %s", args.dataset, result.best_val,
             result.best_epoch, args.out)


def _cmd_distill(args: argparse.Namespace) -> None:
    from sdkd.train.jobs import distill_student

    config = configuration.load(args.config)
    configuration.dataset_config(config, args.dataset)
    result = distill_student(
        config, args.dataset, args.data, args.teacher, args.student, args.bands, args.seed,
        args.out, device=args.device, tune_point=args.tune_point, tuned=args.tuned,
    )
    log.info("%s/%s seed %d: best val %.4g at epoch %d → %s", args.student, args.bands,
             args.seed, result.best_val, result.best_epoch, args.out)


def _cmd_tune(args: argparse.Namespace) -> None:
    from sdkd.tuning import choose

    config = configuration.load(args.config)
    configuration.dataset_config(config, args.dataset)
    doc = choose(config, args.dataset, args.bands, args.results_root, args.out)
    log.info("%s on %s: chose %s (validation MSE %.4g of %d points) → %s", args.bands,
             args.dataset, doc["chosen"]["values"], doc["chosen"]["val_mse"],
             len(doc["points"]), args.out)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from sdkd.evaluate.run import evaluate_run

    config = configuration.load(args.config)
    configuration.dataset_config(config, args.dataset)
    result = evaluate_run(config, args.dataset, args.data, args.run, args.out, device=args.device)
    log.info("%s: test MSE %.4g, SSIM %.4f → %s", args.run, result["metrics"]["mse"],
             result["metrics"]["ssim"] or float("nan"), args.out)


def _cmd_predict(args: argparse.Namespace) -> None:
    from sdkd.predict import predict

    path = predict(args.run, args.data, args.input, args.out, variable=args.variable,
                   axes=args.axes, trajectory=args.trajectory, frame=args.frame,
                   time=args.time, device=args.device)
    log.info("forecast → %s", path)


def _cmd_aggregate(args: argparse.Namespace) -> None:
    from sdkd.report.aggregate import aggregate

    config = configuration.load(args.config)
    table = aggregate(config, args.eval_root, args.out, args.summary, args.tuning_root)
    counts = table["status"].value_counts().to_dict()
    log.info("aggregated %d runs %s → %s, %s", len(table), counts, args.out, args.summary)


def _cmd_figures(args: argparse.Namespace) -> None:
    from sdkd.report.figures import make_figures

    config = configuration.load(args.config)
    figures = make_figures(config, args.metrics, args.eval_root, args.runs_root, args.out_dir,
                           curves_dir=args.curves_dir)
    log.info("%d figures → %s", len(figures), args.out_dir)


def _cmd_report(args: argparse.Namespace) -> None:
    from sdkd.report.html import render_report

    config = configuration.load(args.config)
    path = render_report(
        config, metrics_csv=args.metrics, summary_json=args.summary, figures_dir=args.figures,
        data_files=args.data, out=args.out, config_text=args.config.read_text(),
    )
    log.info("report → %s", path)


def _cmd_readme_results(args: argparse.Namespace) -> None:
    from sdkd.report.readme import results_block, update_readme

    config = configuration.load(args.config)
    results = args.results if args.results is not None else Path(results_root(config))
    block = results_block(config, results, args.readme.parent, figure=args.figure,
                          date=args.date)
    log.info("results block → %s", update_readme(args.readme, block))


def _cmd_compare(args: argparse.Namespace) -> None:
    from sdkd.report.compare import compare_folders

    text, page = compare_folders(args.a, args.b, label_a=args.label_a, label_b=args.label_b,
                                 out=args.out, metric=args.metric)
    print(text)
    log.info("comparison → %s", page)


def _cmd_raw_filename(args: argparse.Namespace) -> None:
    config = configuration.load(args.config)
    print(configuration.raw_filename(configuration.dataset_config(config, args.dataset)))


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {low}, got {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """Usage errors end like every other error: one ``sdkd: error:`` line, exit 2 (a
    subcommand's parser would say ``sdkd distill: error:``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"sdkd: error: {self.prog.removeprefix('sdkd ')}: {message}\n"
                  if self.prog != "sdkd" else f"sdkd: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sdkd",
        description="Frequency-aligned knowledge distillation for spatiotemporal forecasting.",
    )
    parser.add_argument("--version", action="version", version=f"sdkd {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument(
        "--threads", type=_at_least(1), default=None,
        help="CPU threads of the job's thread pools: torch's, OpenMP's, BLAS's (default: the "
        "libraries' choice; Snakemake passes {threads})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")

    def step(name: str, func: Callable[[argparse.Namespace], None], help_: str):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", type=Path, default=Path("config/config.yaml"),
                       help="config YAML (default: config/config.yaml)")
        p.set_defaults(func=func)
        return p

    step("check-config", _cmd_check_config, "validate a config file against the schema")
    step("sources", _cmd_sources,
         "list the named public sources (size, layout, licence) `download` knows")

    p = sub.add_parser("models", help="list every registered model (built-ins and plugins) "
                       "with its parameters and FLOPs", description="list every registered "
                       "model (built-ins and sdkd.models plugins): role, provider, parameters "
                       "and forward FLOPs per sample for one input shape")
    p.set_defaults(func=_cmd_models)
    for flag, default, what in (("--height", 64, "grid height H"), ("--width", 64, "grid width W"),
                                ("--in-steps", 10, "input frames T_in"),
                                ("--out-steps", 10, "forecast frames T_out"),
                                ("--channels", 1, "channels C")):
        p.add_argument(flag, type=_at_least(1), default=default, help=f"{what} (default {default})")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    p = step("raw-filename", _cmd_raw_filename, "print a dataset's raw file name")
    p.add_argument("--dataset", required=True)

    p = step("acquire", _cmd_acquire,
             "simulate or download a dataset's raw file (a file source: check it)")
    p.add_argument("--dataset", required=True, help="a key of `datasets` in the config")
    p.add_argument("--out", type=Path, help="raw file to write (not for a file source)")

    p = step("preprocess", _cmd_preprocess, "raw file → canonical HDF5 with splits and stats")
    p.add_argument("--dataset", required=True, help="a key of `datasets` in the config")
    p.add_argument("--raw", type=Path,
                   help="raw file written by acquire (not for a file source: read in place)")
    p.add_argument("--out", type=Path, required=True, help="canonical HDF5 to write")

    def training_step(name: str, func: Callable[[argparse.Namespace], None], help_: str):
        p = step(name, func, help_)
        p.add_argument("--dataset", required=True, help="a key of `datasets` in the config")
        p.add_argument("--data", type=Path, required=True, help="canonical HDF5 of the dataset")
        p.add_argument("--out", type=Path, required=True,
                       help="run folder: best.pt, last.pt, history.csv, config.yaml, done.json")
        p.add_argument("--device", choices=["auto", "cpu"], default="auto",
                       help="auto leases a free GPU when there is one (default), else the CPU")
        return p

    training_step("train-teacher", _cmd_train_teacher, "train the dataset's teacher")
    p = training_step("distill", _cmd_distill, "train a student with a band setting")
    p.add_argument("--teacher", type=Path, default=None,
                   help="teacher best.pt (every band setting but `none` needs one)")
    p.add_argument("--student", required=True, help="family-size, e.g. unet-s")
    p.add_argument("--bands", required=True, help="a key of distill.settings, e.g. dual")
    p.add_argument("--seed", type=_at_least(0), default=0, help="seed of the student run")
    tuning = p.add_mutually_exclusive_group()
    tuning.add_argument("--tune-point", type=_at_least(0), default=None,
                        help="train this point of the setting's tune: grid (a tuning run)")
    tuning.add_argument("--tuned", type=Path, default=None,
                        help="tuning file of a tuned setting (results/tuning/<dataset>/"
                             "<bands>.json): train with the values it chose")

    p = step("tune", _cmd_tune, "choose a tuned band setting's values on validation")
    p.add_argument("--dataset", required=True, help="a key of `datasets` in the config")
    p.add_argument("--bands", required=True, help="a key of distill.settings with a tune: grid")
    p.add_argument("--results-root", type=Path, required=True,
                   help="the folder holding tuning/<dataset>/<bands>/point-<i>/ (results)")
    p.add_argument("--out", type=Path, required=True, help="tuning file to write")

    p = step("evaluate", _cmd_evaluate, "test-split metrics of a trained run → one JSON")
    p.add_argument("--dataset", required=True, help="a key of `datasets` in the config")
    p.add_argument("--data", type=Path, required=True, help="canonical HDF5 of the dataset")
    p.add_argument("--run", type=Path, required=True, help="run folder (its best.pt) or a .pt")
    p.add_argument("--out", type=Path, required=True, help="evaluation JSON to write")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")

    # No --config: a forecast depends on the run and its data file alone.
    p = sub.add_parser("predict", help="forecast from the last frames of a file → NetCDF",
                       description="forecast from the last frames of a file → NetCDF "
                       "(docs/predict.md)")
    p.set_defaults(func=_cmd_predict)
    p.add_argument("--run", type=Path, required=True, help="run folder (its best.pt) or a .pt")
    p.add_argument("--data", type=Path, required=True,
                   help="canonical HDF5 the run was trained on (statistics, grid, units)")
    p.add_argument("--input", required=True,
                   help="input frames: NetCDF, HDF5, Zarr, .npy, .npz, or a quoted glob")
    p.add_argument("--variable", action="append", default=None,
                   help="variable to read; repeat for one per channel (default: as in "
                   "training for a file dataset, else the file's only one)")
    p.add_argument("--axes", default=None,
                   help="stored axis order: 'T H W', 'T C H W', 'N T H W' or 'N T C H W'")
    p.add_argument("--trajectory", type=_at_least(0), default=0,
                   help="trajectory of an input with an N axis (default 0)")
    last = p.add_mutually_exclusive_group()
    last.add_argument("--frame", type=int, default=None,
                      help="index of the last input frame, negative from the end (default -1)")
    last.add_argument("--time", default=None, help="ISO time stamp of the last input frame")
    p.add_argument("--out", type=Path, required=True, help="forecast NetCDF-4 file to write")
    p.add_argument("--device", default="auto", help="auto (a free GPU, else CPU), cpu or cuda")

    p = step("aggregate", _cmd_aggregate, "evaluation files → metrics.csv and summary.json")
    p.add_argument("--eval-root", type=Path, required=True, help="results/eval")
    p.add_argument("--out", type=Path, required=True, help="metrics CSV to write")
    p.add_argument("--summary", type=Path, required=True, help="summary JSON to write")
    p.add_argument("--tuning-root", type=Path, default=None,
                   help="results/tuning: the tuning files of the tuned band settings")

    p = step("figures", _cmd_figures, "the report's figures and their figures.json")
    p.add_argument("--metrics", type=Path, required=True, help="metrics CSV of aggregate")
    p.add_argument("--eval-root", type=Path, required=True, help="results/eval")
    p.add_argument("--runs-root", type=Path, required=True,
                   help="results (holds teachers/ and students/ with history.csv)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for PNGs + figures.json")
    p.add_argument("--curves-dir", type=Path, default=None,
                   help="also write each run's training curves there as CSV (DVC's plots)")

    p = step("report", _cmd_report, "render the self-contained results/report.html")
    p.add_argument("--metrics", type=Path, required=True, help="metrics CSV of aggregate")
    p.add_argument("--summary", type=Path, required=True, help="summary JSON of aggregate")
    p.add_argument("--figures", type=Path, required=True, help="folder with figures.json")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="canonical HDF5 of every dataset (provenance)")
    p.add_argument("--out", type=Path, required=True, help="report HTML to write")

    p = step("readme-results", _cmd_readme_results,
             "write the README's Results block from a finished results tree")
    p.add_argument("--results", type=Path, default=None,
                   help="results folder of the run (default: the config's, results for "
                   "the default experiment, results/experiments/<name> for a named one)")
    p.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="README with the results markers (default: README.md)")
    p.add_argument("--figure", default=None,
                   help="PNG in results/figures to show (default: the first gain figure)")
    p.add_argument("--date", default=None, help="date of the run (default: today)")

    p = sub.add_parser("compare", help="two results folders' metrics side by side, with "
                       "seed-spread intervals", description="compare two results folders "
                       "(two experiments, or the results of two commits): a table on stdout "
                       "and one self-contained HTML page (docs/compare.md)")
    p.set_defaults(func=_cmd_compare)
    p.add_argument("a", type=Path, metavar="A", help="the reference results folder (with "
                   "tables/metrics.csv)")
    p.add_argument("b", type=Path, metavar="B", help="the results folder judged against A")
    p.add_argument("--label-a", default=None, help="name of A on the page (default: the folder)")
    p.add_argument("--label-b", default=None, help="name of B on the page (default: the folder)")
    p.add_argument("--out", type=Path, default=None,
                   help="page to write (default: B/compare.html, beside B's report.html)")
    p.add_argument("--metric", default="mse", choices=["mse", "mae", "rmse", "rel_l2"],
                   help="the metric of the intervals and verdicts (default: mse)")
    return parser


def _fail(message: str) -> int:
    print(f"sdkd: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    # Before torch (and numpy, which it imports) loads: their pools read the environment
    # then. The steps import torch when they run; the parser above never does.
    limit_thread_pools(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except SdkdError as exc:
        return _fail(str(exc))
    except OSError as exc:  # the one place that turns OS faults into a line, not a traceback
        return _fail(os_error_message(exc))
    except MemoryError:
        return _fail("out of memory (the input asks for more than this machine has; "
                     "see limits.max_array_gib)")
    except KeyboardInterrupt:
        print("sdkd: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
