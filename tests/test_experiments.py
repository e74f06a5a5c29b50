"""Experiments have names (issue 14): a config's `experiment` key roots every derived file
under results/experiments/<name>/, the embedded default keeps results/ and
resources/raw/, and raw data is shared between named experiments by its identity.

Fast: the path plan (sdkd.plan), name validation, raw identities, resolved configs, and
dry runs of the rules. Slow: the default and the smoke experiment run in one checkout,
each leaving the other's files byte for byte as they were.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakerun import SMOKE_RESULTS, copy_workflow, digests, job_counts, snakemake, trimmed_smoke

from sdkd.config import load, raw_file, validate, write_resolved
from sdkd.errors import SdkdError
from sdkd.plan import raw_dir, raw_identity, results_root

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
NS, DR = "navier_stokes", "diffusion_reaction"
# The first level of the default's results/: each rule's folder, and the page.
DEFAULT_TOP = {"benchmarks", "data", "eval", "figures", "logs", "plots", "report.html",
               "students", "tables", "teachers", "tuning"}


def named(name: str | None, edit=None) -> dict:
    """The smoke config as experiment ``name`` (None: no name, the default), edited by
    ``edit``, validated as the Snakefile validates it."""
    config = copy.deepcopy(SMOKE)
    config.pop("experiment")
    if name is not None:
        config["experiment"] = name
    if edit is not None:
        edit(config)
    return validate(config, source="exp.yaml", models=False)


# ---- the path plan ------------------------------------------------------------------------


def test_the_shipped_configs_name_their_experiments():
    names = {}
    for path in sorted((ROOT / "config").glob("*.yaml")):
        names[path.stem] = yaml.safe_load(path.read_text()).get("experiment")
    assert names.pop("config") is None  # the embedded default: results/, as DVC expects
    assert names == {stem: stem for stem in names}  # smoke, study, paper: their own folders
    assert SMOKE_RESULTS == "results/experiments/smoke"


def test_the_default_keeps_todays_paths():
    config = named(None)
    assert results_root(config) == "results"
    assert raw_file(config, NS) == f"resources/raw/{NS}/simulation.h5"
    assert raw_dir(config, DR) == f"resources/raw/{DR}"


def test_a_named_experiment_has_a_folder_of_its_own():
    config = named("smoke")
    assert results_root(config) == "results/experiments/smoke"
    assert raw_file(config, NS).startswith(f"resources/shared/{NS}-")
    assert raw_file(config, NS).endswith("/simulation.h5")


@pytest.mark.parametrize("name", ["Smoke", "a/b", "..", ".hidden", "-x", "_x", "", "x" * 65,
                                  "a b", "smoke/../../results", "café", 5, None])
def test_a_bad_name_is_one_line_naming_the_key(name):
    with pytest.raises(SdkdError) as error:  # None too: `experiment: null` names nothing
        named("smoke", _set("experiment", name))
    message = str(error.value)
    assert message.startswith("exp.yaml: experiment: "), message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["smoke", "a", "0", "x" * 64, "run-2_b", "default", "results"])
def test_every_valid_name_is_one_folder_under_results_experiments(name):
    root = Path(results_root(named(name)))
    assert root.parent == Path("results/experiments") and root.name == name
    # so it never reaches the default's files: none of them lies under experiments/
    assert "experiments" not in DEFAULT_TOP


# ---- raw data, shared by identity ---------------------------------------------------------


def _set(path: str, value):
    def edit(config):
        *parents, key = path.split(".")
        block = config
        for part in parents:
            block = block.setdefault(part, {})
        block[key] = value
    return edit


def test_equal_raw_identities_share_one_folder():
    """What decides the raw file (source block, seed, name) decides its folder; the
    experiment's name, split, windows, runs and training do not."""
    base = named("a")
    for other in (
        named("b"),
        named("b", _set(f"datasets.{NS}.split", {"train": 5, "val": 2, "test": 1})),
        named("b", _set(f"datasets.{NS}.window_stride", 2)),
        named("b", _set(f"datasets.{NS}.students", ["unet-s"])),
        named("b", _set("training.teacher.epochs", 9)),
        named("b", _set(f"datasets.{NS}.simulate.forcing", "fno")),  # the default, spelt out
        named("b", _set("limits.max_array_gib", 1)),
    ):
        assert raw_dir(other, NS) == raw_dir(base, NS)
        assert raw_dir(other, DR) == raw_dir(base, DR)


def test_different_raw_identities_never_share_a_folder():
    base = named("a")
    viscosity = named("a", _set(f"datasets.{NS}.simulate.viscosity", 2.0e-3))
    assert raw_dir(viscosity, NS) != raw_dir(base, NS)
    assert raw_dir(viscosity, DR) == raw_dir(base, DR)  # the other dataset keeps its own
    seed = named("a", _set("seed", 1))  # a simulation's generator seed derives from it
    assert raw_dir(seed, NS) != raw_dir(base, NS) and raw_dir(seed, DR) != raw_dir(base, DR)
    renamed = named("a", lambda c: c["datasets"].update(ns=c["datasets"].pop(NS)))
    assert raw_dir(renamed, "ns") != raw_dir(base, NS)
    folders = {raw_dir(c, NS) for c in (base, viscosity, seed)} | {raw_dir(renamed, "ns")}
    assert len(folders) == 4
    # the default keeps one folder per dataset, whatever decides the file
    assert raw_dir(named(None), NS) == raw_dir(named(None, _set("seed", 1)), NS)


def test_a_download_does_not_depend_on_the_seed():
    block = {"source": "download", "download": {"url": "https://example.invalid/x.h5",
                                                "known_hash": "sha256:" + "0" * 64,
                                                "layout": "pdebench"}}
    config = {"seed": 0, "experiment": "a", "datasets": {"x": block}}
    assert raw_identity(config, "x") == {"source": "download", "download": block["download"]}
    reseeded = {**config, "seed": 7}
    assert raw_dir(reseeded, "x") == raw_dir(config, "x")
    moved = copy.deepcopy(config)
    moved["datasets"]["x"]["download"]["url"] = "https://example.invalid/y.h5"
    assert raw_dir(moved, "x") != raw_dir(config, "x")


def test_two_experiments_resolved_configs_do_not_collide(tmp_path):
    paths = {name: write_resolved(named(name), tmp_path) for name in ("a", "b", None)}
    assert len(set(paths.values())) == 3
    for name, path in paths.items():
        assert load(path).get("experiment") == name


# ---- the rules: dry runs ------------------------------------------------------------------


def _files(listing: str) -> set[str]:
    """Every output, log and benchmark file of a `snakemake -n` job listing."""
    files = set()
    for line in listing.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in ("output", "log", "benchmark"):
            files |= set(value.split(", "))
    return files


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str | None, set[str]]:
    """The files the whole smoke DAG would write as the default (None), as `smoke` and as
    `other`, from dry runs in one empty copy of the workflow."""
    work = copy_workflow(tmp_path_factory.mktemp("plans"))
    found = {}
    for name in (None, "smoke", "other"):
        path = work / f"config/{name or 'unnamed'}-plan.yaml"
        path.write_text(yaml.safe_dump(named(name), sort_keys=False))
        result = snakemake(work, "-n", "--configfile", str(path.relative_to(work)))
        assert result.returncode == 0, result.stderr[-3000:]
        found[name] = _files(result.stdout + result.stderr)
    return found


@pytest.mark.workflow
def test_the_default_plans_todays_paths(plans):
    default = plans[None]
    assert "results/report.html" in default
    assert {Path(f).parts[1] for f in default if f.startswith("results/")} == DEFAULT_TOP
    raw = {f for f in default if f.startswith("resources/")}
    assert raw == {f"resources/raw/{NS}/simulation.h5", f"resources/raw/{DR}/simulation.h5"}
    assert default - raw == {f for f in default if f.startswith("results/")}


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["smoke", "other"])
def test_a_named_experiment_plans_every_file_in_its_folders(plans, name):
    files = plans[name]
    assert f"results/experiments/{name}/report.html" in files
    derived = {f for f in files if f.startswith(f"results/experiments/{name}/")}
    raw = files - derived
    assert {f.split("/")[1] for f in raw} == {"shared"}
    assert {Path(f).parts[3] for f in derived} == DEFAULT_TOP  # a tree like results/
    assert {raw_file(named(name), d) for d in (NS, DR)} == raw


@pytest.mark.workflow
def test_no_two_experiments_plan_one_file(plans):
    """Named experiments share only raw data of equal identity, the default nothing."""
    shared = plans["smoke"] & plans["other"]
    assert shared == {raw_file(named("smoke"), d) for d in (NS, DR)}
    assert not plans[None] & (plans["smoke"] | plans["other"])


# ---- the default and the smoke experiment in one checkout ---------------------------------


def _snapshot(work: Path) -> dict[str, str]:
    """sha256 of every file under results/ and resources/, by path relative to ``work``."""
    return {f"{top}/{path}": digest for top in ("results", "resources")
            for path, digest in digests(work / top).items()}


def _of_named(path: str) -> bool:
    return path.startswith(("results/experiments/", "resources/shared/"))


def _run(work: Path, *args: str) -> str:
    result = snakemake(work, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.mark.workflow
@pytest.mark.slow
def test_default_and_smoke_keep_separate_files(copy_of_smoke):
    """The issue's test. A tiny default stands in for config/config.yaml (the real one
    takes 27 minutes): it runs beside the session's smoke run without touching it. Then
    the smoke experiment runs again, every rule of it (navier_stokes' chain from its
    raw data to the report: the other dataset's jobs write the same rules' paths), and
    the default's files, hashed before, are byte for byte the same; neither experiment
    has anything left to do."""
    work = copy_of_smoke
    default_config = trimmed_smoke()
    del default_config["distill"]["settings"]["dual"]["tune"]  # a teacher, no tuning
    (work / "config/config.yaml").write_text(yaml.safe_dump(default_config, sort_keys=False))
    smoke = _snapshot(work)
    assert smoke and all(_of_named(path) for path in smoke)

    _run(work)  # the default: config/config.yaml, no --configfile
    both = _snapshot(work)
    assert {p: h for p, h in both.items() if _of_named(p)} == smoke
    default = {p: h for p, h in both.items() if not _of_named(p)}
    assert "results/report.html" in default and f"resources/raw/{NS}/simulation.h5" in default
    assert "Nothing to be done" in _run(work, "-n", "--configfile", "config/smoke.yaml")

    dry = _run(work, "-n", "--forceall", "--configfile", "config/smoke.yaml")
    output = _run(work, "--configfile", "config/smoke.yaml",
                  "--forcerun", raw_file(named("smoke"), NS))
    assert set(job_counts(output)) == set(job_counts(dry))  # every rule ran
    after = _snapshot(work)
    assert {p: h for p, h in after.items() if not _of_named(p)} == default
    assert "Nothing to be done" in _run(work, "-n")


@pytest.mark.workflow
def test_a_second_experiment_reuses_equal_raw_data(copy_of_smoke):
    """Another named experiment with smoke's navier_stokes but other diffusion–reaction
    data: it acquires only the dataset whose raw identity is new, preprocesses both in
    its own folder, and plans nothing that smoke wrote."""
    work = copy_of_smoke
    config = named("other", _set(f"datasets.{DR}.simulate.n_trajectories", 7))
    config["training"]["student"]["epochs"] = 1  # another experiment, not other raw data
    (work / "config/other.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    output = _run(work, "-n", "--configfile", "config/other.yaml")
    counts = job_counts(output)
    assert counts["acquire"] == 1 and counts["preprocess"] == 2
    planned = _files(output)
    assert raw_file(config, DR) in planned and raw_file(config, NS) not in planned
    assert raw_file(config, NS) == raw_file(named("smoke"), NS)  # smoke's, read as it is
    assert all(f.startswith("results/experiments/other/") for f in planned - {raw_file(config, DR)})
