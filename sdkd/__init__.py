"""sdkd: spectral decoupled knowledge distillation for spatiotemporal forecasting.

The package follows the data flow of the pipeline:
``data`` (acquire, simulate, preprocess, load) → models → distill → train → evaluate → report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sdkd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
