"""Faithfulness metrics, baseline maps and the randomisation sanity check for `camcli evaluate`."""

from .baselines import BASELINE_MAPS, baseline_maps
from .faithfulness import BASELINES, Curves, Road, deletion_insertion, drop_increase, impute, road
from .sanity import cascade, spearman, ssim

__all__ = [
    "BASELINES",
    "BASELINE_MAPS",
    "Curves",
    "Road",
    "baseline_maps",
    "cascade",
    "deletion_insertion",
    "drop_increase",
    "impute",
    "road",
    "spearman",
    "ssim",
]
