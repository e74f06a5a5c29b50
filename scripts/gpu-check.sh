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
  if ! "$py" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$private/site" "${wheels[@]}"; then
    # No pip in the image's environment (uv makes venvs without it), or pip failed: a
    # wheel is a zip of what goes into site-packages, less its .data/ folder (only
    # greenlet's C headers here), so unpacking it is the install --no-deps --target does.
    echo "gpu-check: pip install failed; unpacking the wheels instead" >&2
    "$py" - "$private/site" "${wheels[@]}" <<'UNPACK' || echo "gpu-check: unpacking failed" >&2
import sys
import zipfile

target, *wheels = sys.argv[1:]
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
