#!/usr/bin/env bash
# Build .whl/: the wheels that `scripts/gpu-check.sh` installs on the GPU machine, whose
# image has PyTorch and the scientific stack but not jsonschema, pooch or Snakemake, and
# cannot download anything. Run it here (a machine that reaches PyPI) before a GPU run:
#
#     bash scripts/gpu-wheels.sh            # → .whl/ (git-ignored, 27 MiB, 16 of them pulp's bundled CBC solver)
#     PYTHON_VERSION=3.11 bash scripts/gpu-wheels.sh /tmp/whl311   # e.g. a local rehearsal
#
# The versions are the ones this repository is tested with (the CI environment's pins, as
# `pip freeze` showed them on 2026-11-30). The list is the dependency closure of
# jsonschema, pooch and snakemake less what the GPU image already has (numpy, pyyaml,
# jinja2/markupsafe, requests and its four dependencies, psutil, attrs); dvc is not needed
# there. Binary wheels are fetched for CPython $PYTHON_VERSION (default 3.12, the image's).
set -euo pipefail
out=${1:-.whl}
pyver=${PYTHON_VERSION:-3.12}
pins=(
  # sdkd.config
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
  rpds-py==2026.9.1
  # sdkd.data.download
  pooch==1.9.0 platformdirs==4.14.8 packaging==25.0
  # Snakemake and its closure
  snakemake==9.27.1 snakemake-interface-common==1.23.0
  snakemake-interface-executor-plugins==9.4.0 snakemake-interface-logger-plugins==2.1.0
  snakemake-interface-report-plugins==1.3.0 snakemake-interface-scheduler-plugins==2.0.2
  snakemake-interface-storage-plugins==4.4.1 annotated-types==0.8.0
  argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0
  docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12
  gitpython==3.2.1 greenlet==3.5.6 humanfriendly==10.0 immutables==0.21 jupyter-core==5.9.1
  nbformat==5.11.1 pulp==3.3.2 pydantic==2.14.4 pydantic-core==2.50.5 smart-open==7.7.1
  smmap==5.0.3 sqlalchemy==2.0.58 sqlmodel==0.0.37 tabulate==0.10.0 tenacity==9.2.1
  throttler==1.2.3 traitlets==5.16.1 typing-extensions==4.16.0 typing-inspection==0.4.5
  wrapt==2.5.2 yte==1.9.4
)
mkdir -p "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$out" "${pins[@]}"
# connection-pool is published as a source archive only (pure Python): build its wheel here.
python3 -m pip wheel -q --no-deps --no-binary=connection-pool -w "$out" connection-pool==0.0.3
echo "$(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
