"""Test-split evaluation of trained runs: metrics, spectra and the evaluation file.

    evaluate_run(config, dataset, data_path, run_dir_or_checkpoint, out_path)  # writes JSON
    read_evaluation(path)                                                    # reads it back

``metrics`` holds the streaming error accumulators, ``spectra`` the radial energy
spectra, ``run`` the job itself. The file layout is docs/evaluation-format.md.
"""

from sdkd.evaluate.metrics import ForecastMetrics, psnr, ssim_frames
from sdkd.evaluate.run import SCHEMA_VERSION, evaluate_run, read_evaluation
from sdkd.evaluate.spectra import SpectrumAccumulator, radial_spectrum

__all__ = [
    "SCHEMA_VERSION",
    "ForecastMetrics",
    "SpectrumAccumulator",
    "evaluate_run",
    "psnr",
    "radial_spectrum",
    "read_evaluation",
    "ssim_frames",
]
