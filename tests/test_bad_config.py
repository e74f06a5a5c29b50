"""Hostile and faulty configs: `sdkd check-config` ends each with one clear line.

Three tables, by what is wrong: the file itself (what it is, how big, what YAML it
holds), a value (the schema's types and bounds, finiteness), and a rule between keys
that only the whole config decides (frames, grids and band cutoffs against the models,
learning rates, the size of the run grid). Every case must exit 2 with exactly one
`sdkd: error:` line naming the file, the key where there is one, and what was
expected; the configs are small and checked in-process, so the tables are cheap.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_clean_failure, file_dataset

from sdkd import config as configuration

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
NS = ("datasets", "navier_stokes")
DR = ("datasets", "diffusion_reaction")


def _check(sdkd_cli, path: Path, *fragments: str) -> str:
    status, err = sdkd_cli("check-config", "--config", path)
    return assert_clean_failure(status, err, str(path), *fragments)


# ---- the file: what it is and what YAML it holds -------------------------------------------


def _write(text: str | bytes):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "config.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return make


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").mkdir()
    return tmp_path / "config.yaml"


def _symlink_loop(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.symlink_to(path)
    return path


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "config.yaml")  # opening it would wait for a writer forever
    return tmp_path / "config.yaml"


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes that expand to 9**levels strings ("billion laughs")."""
    lines = ["seed: 0", f"lol0: &lol0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\ndatasets: {{bomb: *lol{levels}}}\n"


FILE_CASES = {
    "missing": (lambda tmp_path: tmp_path / "config.yaml", ["config file not found"]),
    "directory": (_directory, ["is a directory"]),
    "symlink loop": (_symlink_loop, ["Too many levels of symbolic links"]),
    "fifo": (_fifo, ["not a regular file"]),
    "too large": (_write("# padding\n" * (configuration.MAX_CONFIG_BYTES // 10 + 1)),
                  [f"larger than {configuration.MAX_CONFIG_BYTES} bytes"]),
    "binary (HDF5 header)": (_write(b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00"),
                             ["not UTF-8 text", "byte 0x89 at offset 0"]),
    "UTF-16": (_write("seed: 0\n".encode("utf-16")), ["not UTF-8 text"]),
    "python tag": (_write("seed: !!python/object/apply:os.system ['touch PWNED']\n"),
                   ["not valid YAML", "line 1, column 7", "python/object/apply:os.system"]),
    "syntax error": (_write("seed: [1,\n"), ["not valid YAML", "line 2"]),
    "control character": (_write("seed: \x01\n"), ["not valid YAML",
                                                   "special characters are not allowed"]),
    "two documents": (_write("seed: 0\n---\nseed: 1\n"), ["not valid YAML",
                                                         "expected a single document"]),
    "nested too deep for PyYAML": (_write("seed: " + "[" * 5000 + "]" * 5000 + "\n"),
                                   ["nested deeper than Python can read"]),
    "nested too deep": (_write("seed: " + "[" * 40 + "]" * 40 + "\n"),
                        ["nested deeper than 32 levels"]),
    "alias bomb": (_write(_alias_bomb()), ["more than 10000 values once YAML aliases"]),
    "recursive alias": (_write("seed: &loop [*loop]\n"), ["seed.0", "contains itself"]),
    "empty": (_write(""), ["expected a mapping of config keys"]),
    "top-level list": (_write("- seed\n- 0\n"), ["expected a mapping of config keys"]),
    "boolean key (on:)": (_write("seed: 0\non: 1\n"), ["key True is not a string"]),
    "integer key": (_write("seed: 0\ndatasets: {1: {}}\n"), ["datasets: key 1 is not a string"]),
}


@pytest.mark.parametrize("case", FILE_CASES)
def test_a_bad_config_file(sdkd_cli, tmp_path, case):
    make, fragments = FILE_CASES[case]
    path = make(tmp_path)
    started = time.perf_counter()
    _check(sdkd_cli, path, *fragments)
    # Bounded before anything expands it: the alias bomb took 152 s and 5.7 GB unbounded.
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "PWNED").exists()


# ---- a value: types, bounds, finiteness ------------------------------------------------------


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(config):
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return edit


VALUE_CASES = {
    "nan lr": (_set("training", "student", "lr", float("nan")),
               ["training.student.lr: nan is not a finite number"]),
    "inf lr": (_set("training", "teacher", "lr", float("inf")),
               ["training.teacher.lr: inf is not a finite number"]),
    "-inf viscosity": (_set(*NS, "simulate", "viscosity", float("-inf")),
                       ["datasets.navier_stokes.simulate.viscosity: -inf is not a finite"]),
    "nan cutoff": (_set("evaluate", "band_cutoffs", [4.0, float("nan")]),
                   ["evaluate.band_cutoffs.1: nan"]),
    "inf memory limit": (_set("limits", "max_array_gib", float("inf")),
                         ["limits.max_array_gib: inf"]),
    "float trajectory count": (_set(*NS, "simulate", "n_trajectories", 1.0e12),
                               ["datasets.navier_stokes.simulate.n_trajectories",
                                "is not of type 'integer'"]),
    "absurd trajectory count": (_set(*NS, "simulate", "n_trajectories", 10**12),
                                ["simulate.n_trajectories", "greater than the maximum of 100000"]),
    "float frame count": (_set(*NS, "in_steps", 3.0), ["datasets.navier_stokes.in_steps",
                                                       "not of type 'integer'"]),
    "absurd resolution": (_set(*DR, "simulate", "resolution", 2**20),
                          ["simulate.resolution", "maximum of 4096"]),
    "absurd frames": (_set(*DR, "simulate", "n_frames", 10**9), ["simulate.n_frames",
                                                                "maximum"]),
    "seed beyond 2^32": (_set("seed", 2**40), ["seed:", "maximum of 4294967295"]),
    "seed list beyond 2^32": (_set("distill", "seeds", [0, 2**64]), ["distill.seeds.1"]),
    "absurd epochs": (_set("training", "teacher", "epochs", 10**9),
                      ["training.teacher.epochs", "maximum"]),
    "absurd epochs of one dataset": (
        _set(*NS, "training", {"teacher": {"epochs": 10**9}}),
        ["datasets.navier_stokes.training.teacher.epochs", "maximum"]),
    "misspelt key of one dataset's training": (
        _set(*NS, "training", {"student": {"epoch": 3}}),
        ["datasets.navier_stokes.training.student", "'epoch' was unexpected"]),
    "absurd batch": (_set("evaluate", "batch_size", 10**9), ["evaluate.batch_size",
                                                            "maximum"]),
    "absurd teacher width": (_set("models", "teacher_overrides", {"hid_T": 10**7}),
                             ["models.teacher_overrides.hid_T", "maximum of 16384"]),
    "absurd student depth": (_set("models", "student_overrides", {"depth": 10**6}),
                             ["models.student_overrides.depth", "maximum of 256"]),
    "absurd width_mult": (_set("models", "student_overrides", {"width_mult": 1.0e6}),
                          ["models.student_overrides.width_mult", "maximum of 64"]),
    "fractional depth": (_set("models", "student_overrides", {"depth": 2.5}),
                         ["models.student_overrides.depth", "not of type 'integer'"]),
    "too few encoder layers": (_set("models", "teacher_overrides", {"N_S": 2}),
                               ["models.teacher_overrides.N_S", "minimum of 3"]),
    "misspelt override": (_set("models", "student_overrides", {"widht_mult": 0.5}),
                          ["models.student_overrides", "'widht_mult' was unexpected",
                           "width_mult"]),
    "grid as an override": (_set("models", "teacher_overrides", {"height": 64}),
                            ["models.teacher_overrides", "'height' was unexpected"]),
}


def _config_with(tmp_path: Path, edit) -> Path:
    config = copy.deepcopy(SMOKE)
    edit(config)
    path = tmp_path / "config.yaml"
    # the YAML spelling of NaN and Inf (.nan, .inf), as a user writes them
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("case", VALUE_CASES)
def test_a_bad_value(sdkd_cli, tmp_path, case):
    edit, fragments = VALUE_CASES[case]
    _check(sdkd_cli, _config_with(tmp_path, edit), *fragments)


# ---- a rule between keys ---------------------------------------------------------------------


def _edits(*edits):
    def edit(config):
        for one in edits:
            one(config)

    return edit


def _file_source(path: str):
    return _set(*NS, file_dataset(Path(path)))


def _download(**block):
    return _set(*NS, {"source": "download", "download": block,
                      "split": {"train": 1, "val": 1, "test": 1}, "in_steps": 1, "out_steps": 1})


CROSS_CASES = {
    "min_lr above lr": (_set("training", "student", "min_lr", 0.1),
                        ["training.student.min_lr: 0.1 is above lr = 0.001"]),
    "one dataset's lr below min_lr": (
        _edits(_set("training", "student", "min_lr", 1e-4),
               _set(*DR, "training", {"student": {"lr": 1e-5}})),
        ["datasets.diffusion_reaction.training.student.min_lr: 0.0001 is above lr = 1e-05"]),
    "window longer than the records": (
        _edits(_set(*NS, "in_steps", 4), _set(*NS, "out_steps", 3)),
        ["datasets.navier_stokes.in_steps", "= 7 frames", "simulate.n_records = 6"]),
    "window longer than the strided frames": (
        _set(*DR, "temporal_stride", 3),
        ["datasets.diffusion_reaction.in_steps", "n_frames = 11 with temporal_stride 3 gives 4"]),
    "split beyond max_trajectories": (
        _set(*NS, "max_trajectories", 5),
        ["datasets.navier_stokes.split", "8 trajectories asked for", "max_trajectories keeps 5"]),
    "split beyond the single series": (
        _set(*DR, "simulate", "n_trajectories", 1),
        ["datasets.diffusion_reaction.split", "single series", "in_steps + out_steps = 6"]),
    "grid of 2 × 2": (_set(*NS, "spatial_stride", 8),
                      ["datasets.navier_stokes.spatial_stride", "2×2", "multiple of 4"]),
    "grid not divisible by 4": (
        _edits(_set(*DR, "simulate", "resolution", 18)),
        ["datasets.diffusion_reaction.simulate.resolution", "18×18", "multiple of 4"]),
    "simulated data too large": (
        _set("limits", "max_array_gib", 1e-6),
        ["datasets.navier_stokes.simulate", "GiB", "limits.max_array_gib"]),
    "cutoff above the latent Nyquist limit": (
        _set("distill", "settings", "dual", "cutoffs", [3]),
        ["distill.settings.dual.cutoffs", "band 1", "4×4 latent grid of navier_stokes",
         "2.83"]),
    "cutoffs with an empty band between": (
        _set("distill", "settings", "multi", {"cutoffs": [1.1, 1.2]}),
        ["distill.settings.multi.cutoffs", "band 1 of cutoffs [1.1, 1.2]", "4×4 latent"]),
    "decreasing cutoffs": (_set("distill", "settings", "multi", {"cutoffs": [2, 1]}),
                           ["distill.settings.multi.cutoffs", "not strictly increasing"]),
    "evaluate cutoff above the data Nyquist limit": (
        _set("evaluate", "band_cutoffs", [4, 12]),
        ["evaluate.band_cutoffs", "band 2", "16×16 data grid of navier_stokes", "11.3"]),
    "decreasing evaluate cutoffs": (_set("evaluate", "band_cutoffs", [8, 4]),
                                    ["evaluate.band_cutoffs", "not strictly increasing"]),
    "a run grid too large": (
        _set("distill", "settings", "none", {"seeds": list(range(6000))}),
        ["12010 training runs", "at most 10000"]),
    "a raw file named ..": (_file_source("/data/.."),
                            ["datasets.navier_stokes.file.path", "named '..'"]),
    "a raw file with a newline": (_file_source("/data/a\nb.h5"),
                                  ["datasets.navier_stokes.file.path", "printable"]),
    "a raw file with a NUL": (_file_source("/data/a\0b.h5"),
                              ["datasets.navier_stokes.file.path", "NUL"]),
    "a download named ..": (_download(name="pdebench_diff_react", filename=".."),
                            ["datasets.navier_stokes.download", "bad filename '..'"]),
    "an unknown download": (_download(name="nope"),
                            ["datasets.navier_stokes.download.name", "unknown file 'nope'"]),
    "an unknown student": (_set("models", "students", ["unet-xs"]),
                           ["models.students", "unknown size 'xs'"]),
    "an override the student lacks": (
        _set("models", "student_overrides", {"mlp_ratio": 2.0}),
        ["models.student_overrides", "mlp_ratio does not apply to unet-s"]),
}


@pytest.mark.parametrize("case", CROSS_CASES)
def test_a_bad_rule_between_keys(sdkd_cli, tmp_path, case):
    edit, fragments = CROSS_CASES[case]
    _check(sdkd_cli, _config_with(tmp_path, edit), *fragments)


def test_a_good_config_passes(sdkd_cli, tmp_path):
    """The tables' base is valid: each case fails for its own edit only."""
    status, err = sdkd_cli("check-config", "--config", _config_with(tmp_path, lambda c: None))
    assert status == 0, err
