"""Training: one loop for teachers and students, checkpoints, and GPU leases.

- :func:`fit` / :class:`TrainConfig` / :class:`TrainResult` (:mod:`sdkd.train.engine`)
- :func:`save_checkpoint` / :func:`load_checkpoint` (:mod:`sdkd.train.checkpoint`)
- :func:`gpu_lease` / :class:`Lease` (:mod:`sdkd.train.lease`)
"""

from sdkd.train.checkpoint import load_checkpoint, save_checkpoint, sub_state_dict
from sdkd.train.engine import TrainConfig, TrainResult, fit
from sdkd.train.lease import Lease, gpu_lease

__all__ = [
    "Lease",
    "TrainConfig",
    "TrainResult",
    "fit",
    "gpu_lease",
    "load_checkpoint",
    "save_checkpoint",
    "sub_state_dict",
]
