"""Evaluation metrics: SIFID, patch SWD, patch Fréchet distance, diversity (tensors in, numbers out).

    from singan_core.metrics import evaluate, evaluate_frame
    report = evaluate(real, samples)               # real [1, 3, H, W], samples [N, 3, H, W], both in [-1, 1]
    frame = evaluate_frame(real, samples, "swd,patch_fd,diversity")   # long-format pandas DataFrame

SIFID needs the Inception-v3 weights file (see `resolve_inception_weights`); the other three need nothing.
"""

from .diversity import diversity
from .evaluate import COLUMNS, METRICS, Evaluation, evaluate, evaluate_frame, metric_name, parse_metrics
from .frechet import FrechetReference, frechet_distance, gaussian_stats, psd_sqrt
from .patch import (
    laplacian_pyramid,
    patch_fd,
    patch_stats,
    patch_swd,
    pooled_patch_stats,
    swd_directions,
    swd_levels,
)
from .sifid import (
    SIFID_LAYERS,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    InceptionStem,
    MissingWeightsError,
    default_weights_path,
    inception_stats,
    load_inception,
    random_inception_state_dict,
    resolve_inception_weights,
    sifid,
)

__all__ = [
    "COLUMNS",
    "METRICS",
    "SIFID_LAYERS",
    "WEIGHTS_ENV",
    "WEIGHTS_FILE",
    "WEIGHTS_URL",
    "Evaluation",
    "FrechetReference",
    "InceptionStem",
    "MissingWeightsError",
    "default_weights_path",
    "diversity",
    "evaluate",
    "evaluate_frame",
    "frechet_distance",
    "gaussian_stats",
    "inception_stats",
    "laplacian_pyramid",
    "load_inception",
    "metric_name",
    "parse_metrics",
    "patch_fd",
    "patch_stats",
    "pooled_patch_stats",
    "patch_swd",
    "psd_sqrt",
    "random_inception_state_dict",
    "resolve_inception_weights",
    "sifid",
    "swd_directions",
    "swd_levels",
]
