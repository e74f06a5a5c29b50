"""Spec-sheet peak FLOP/s of GPUs, for model FLOP utilisation (MFU) against the spec.

An MFU divided by a *measured* matmul rate says how close the model gets to what this
GPU's matmuls reach in practice (an H200 measured about 790 dense bf16 TFLOP/s); an MFU
divided by the *spec* peak is the figure papers quote. The benchmarks report both, named
``mfu_vs_measured_matmul`` and ``mfu_vs_spec_peak``.

Values: dense (no 2:4 sparsity) bf16 tensor-core TFLOP/s from NVIDIA's data sheets.
"""

from __future__ import annotations

# (substring of torch.cuda.get_device_name(), dense bf16 TFLOP/s); first match wins, so the
# PCIe H100 (a lower clock and power) comes before the SXM one.
SPEC_BF16_DENSE_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5
    ("H200", 989.0),  # same compute as the H100 SXM, more and faster memory
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
]


def spec_peak_tflops(device_name: str, override: float | None = None) -> tuple[float | None, str]:
    """(dense bf16 spec peak in TFLOP/s, where it comes from) of a GPU by its name;
    (None, why) for a device the table does not know. ``override`` wins."""
    if override is not None:
        return override, "given (--spec-peak-tflops)"
    for key, tflops in SPEC_BF16_DENSE_TFLOPS:
        if key in device_name:
            return tflops, f"NVIDIA data sheet, dense bf16 ({key})"
    return None, f"unknown device {device_name!r}: pass --spec-peak-tflops"
