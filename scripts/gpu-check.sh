#!/usr/bin/env bash
# Every GPU figure in one command, on a machine whose image has PyTorch but not this
# project's other dependencies and that cannot download anything (docs/gpu.md):
#
#     bash scripts/gpu-check.sh OUT            # on the GPU machine (refuses without CUDA)
#     bash scripts/gpu-check.sh OUT --dry      # the same parts, tiny, on a CPU
#
# 1. installs the wheels carried in .whl/ (built beforehand by scripts/gpu-wheels.sh;
#    SDKD_WHEELS=DIR takes another folder) into a private folder, without touching the
#    image's own packages;
# 2. puts that folder and the repository on PYTHONPATH (the project is not installed
#    there), and `sdkd` on PATH as a shim for `python3 -m sdkd` (the Snakemake rules
#    call it);
# 3. runs benchmarks/gpu_check.py, which writes figures.json, raw.json, summary.md and
#    log.txt into OUT. Extra arguments go to it (--dry, --budget S, --parts a,b).
set -uo pipefail
out=${1:?usage: bash scripts/gpu-check.sh OUT [--dry] [--budget S] [--parts a,b]}
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
private=$(mktemp -d "${TMPDIR:-/tmp}/sdkd-gpu-site.XXXXXX")
trap 'rm -rf "$private"' EXIT
shopt -s nullglob
wheels=("${SDKD_WHEELS:-$root/.whl}"/*.whl)
if ((${#wheels[@]})); then
  if "$py" -m pip --version > /dev/null 2>&1; then
    # pip checks every wheel's tags before installing any: a wrong Python installs nothing
    "$py" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$private/site" "${wheels[@]}" || echo "gpu-check: installing the wheels failed" >&2
  else
    # No pip in the image's environment (uv makes venvs without it): a wheel is a zip of
    # what goes into site-packages, less its .data/ folder (only greenlet's C headers
    # here), so unpacking it is what `pip install --no-deps --target` does. Like pip, it
    # refuses the lot when a binary wheel is for another Python.
    echo "gpu-check: no pip for $py; unpacking the wheels" >&2
    "$py" - "$private/site" "${wheels[@]}" <<'UNPACK' || echo "gpu-check: unpacking failed" >&2
import sys
import zipfile
from pathlib import Path

target, *wheels = sys.argv[1:]
tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
wrong = [w for w in wheels if not Path(w).name.endswith("-none-any.whl") and f"-{tag}-" not in w]
if wrong:
    sys.exit(f"wheels for another Python than {tag}: {', '.join(Path(w).name for w in wrong)}")
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target, [n for n in z.namelist() if not n.split("/")[0].endswith(".data")])
UNPACK
  fi
else
  echo "gpu-check: no wheels in ${SDKD_WHEELS:-$root/.whl} (scripts/gpu-wheels.sh builds them;" \
    "needed where the image lacks jsonschema, pooch or snakemake)" >&2
fi
export PYTHONPATH="$private/site:$root${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$private/bin"
printf '#!/bin/sh\nexec "%s" -m sdkd "$@"\n' "$(command -v "$py")" > "$private/bin/sdkd"
printf '#!/bin/sh\nexec "%s" -m snakemake "$@"\n' "$(command -v "$py")" > "$private/bin/snakemake"
chmod +x "$private/bin/sdkd" "$private/bin/snakemake"
export PATH="$private/bin:$PATH"
cd "$root" && "$py" benchmarks/gpu_check.py --out "$out" "$@"
