"""Make Snakemake adopt the files DVC checked out: ``python -m sdkd.dvc_adopt [--force]``.

DVC restores its outs by content. A file it checks out (``dvc pull``, ``dvc checkout``,
``dvc exp apply``, the temporary copy a queued experiment runs in) gets the time of the
checkout, in no particular order, and a fresh copy has no ``.snakemake/`` records.
Snakemake would then redo any job whose inputs happen to look newer than its outputs,
and could not tell which params built a file, so a later config change would rerun
nothing.

Adopting runs ``snakemake --touch --forceall``: it runs no job, touches every output in
DAG order and records each job's provenance. It does so for the stages whose outs
``dvc.lock`` lists and the workspace holds, with the config those stages were locked
with: dvc.lock's params, not config/config.yaml, which ``dvc exp run -S`` has already
changed when the first stage starts. Snakemake's records then describe the files DVC put
there, and the stage's own Snakemake call reruns exactly the jobs the new params affect.

Every stage of dvc.yaml runs this before its Snakemake call. Without ``--force`` it
adopts only a checkout Snakemake has no records of (a clone, a queued experiment's
copy) and leaves a workspace where Snakemake has run alone, so that a killed job's
incomplete outputs are rerun (and its training resumed), never touched. ``--force``
adopts whatever DVC checked out, for use by hand right after ``dvc checkout`` or
``dvc exp apply`` in such a workspace (docs/dvc.md).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from sdkd.config import yaml_problem
from sdkd.errors import SdkdError, os_error_message

PARAMS_FILE = "config/config.yaml"
# Where Snakemake's default (file) persistence keeps one record per output it made.
RECORDS = Path(".snakemake/metadata")


def snakemake_command(cmd: str | list[str]) -> list[str]:
    """The Snakemake call of a dvc.yaml stage (``cmd``: one command or a list)."""
    for command in [cmd] if isinstance(cmd, str) else cmd:
        argv = shlex.split(command)
        if argv[:1] == ["snakemake"]:
            return argv
    raise ValueError(f"no snakemake command in {cmd!r}")


def targets(argv: list[str]) -> list[str]:
    """``argv`` without its ``--cores`` setting: the rules and files it asks for."""
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("--cores", "-c"):
            skip = True
        elif not arg.startswith(("--cores=", "-c=")):
            kept.append(arg)
    return kept


def adoptable(stages: dict, locked: dict, root: Path) -> list[str]:
    """The stages to adopt, in dvc.yaml's order: the longest run of them, from the
    first, that dvc.lock describes with one config and whose outs all exist. The stages
    after a missing out are rebuilt from the files before it, not adopted (as are those
    after an entry DVC would not have written: no params, outs without paths)."""
    names: list[str] = []
    first: dict | None = None
    for name in stages:
        entry = locked.get(name)
        if not isinstance(entry, dict):
            break
        params = (entry.get("params") or {}).get(PARAMS_FILE)
        outs = entry.get("outs") or []
        if not isinstance(params, dict) or (first is not None and params != first):
            break
        if not all(isinstance(out, dict) and isinstance(out.get("path"), str)
                   and (root / out["path"]).exists() for out in outs):
            break
        first = params
        names.append(name)
    return names


def _mapping(path: Path, key: str) -> dict:
    """The mapping under ``key`` of the YAML mapping in ``path`` (absent: empty)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SdkdError(f"{path}: not YAML ({yaml_problem(exc)})") from None
    if not isinstance(doc, dict):
        raise SdkdError(f"{path}: expected a mapping, but it is {type(doc).__name__}")
    part = doc.get(key, {})
    if not isinstance(part, dict):
        raise SdkdError(f"{path}: expected a mapping under {key!r}, but it is "
                        f"{type(part).__name__}")
    return part


def adopt(root: Path, force: bool = False) -> str | None:
    """Adopt the DVC-checked-out files of ``root``; returns the last stage adopted.

    Raises:
        SdkdError: one line: dvc.yaml or dvc.lock unreadable, a stage without a Snakemake
            call, or Snakemake's touch failed.
    """
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    records = root / RECORDS
    if not force and records.is_dir() and any(records.iterdir()):
        return None
    stages = _mapping(root / "dvc.yaml", "stages")
    locked = _mapping(lock, "stages")
    names = adoptable(stages, locked, root)
    if not names:
        return None
    last = names[-1]
    try:
        argv = snakemake_command(stages[last]["cmd"])
    except (KeyError, TypeError, ValueError):
        raise SdkdError(f"{root / 'dvc.yaml'}: stage {last!r} has no `snakemake` command in "
                        "its cmd") from None
    with tempfile.TemporaryDirectory(prefix="sdkd-adopt-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(yaml.safe_dump(locked[last]["params"][PARAMS_FILE]))
        # The file's path is not provenance (common.smk: the `config` param is a Path),
        # so the records are those of a run on config/config.yaml with these contents.
        touch = subprocess.run(
            [sys.executable, "-m", "snakemake", *targets(argv), "--cores", "1",
             "--touch", "--forceall", "--configfile", str(config), "--quiet", "all"],
            cwd=root, check=False,
        )
    if touch.returncode != 0:
        raise SdkdError(f"{root}: `snakemake --touch` of the outs dvc.lock lists up to stage "
                        f"{last!r} failed (exit {touch.returncode}; its output is above)")
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdkd.dvc_adopt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true",
                        help="adopt even where Snakemake has records (right after "
                             "`dvc checkout` or `dvc exp apply`)")
    args = parser.parse_args(argv)
    try:
        last = adopt(Path.cwd(), force=args.force)
    except SdkdError as exc:
        print(f"sdkd: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sdkd: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    if last is not None:
        print(f"sdkd: Snakemake adopted the outs of dvc.lock up to stage {last!r}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
