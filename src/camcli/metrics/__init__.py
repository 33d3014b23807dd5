"""Faithfulness, localisation and complexity metrics, baseline maps, the randomisation sanity check and the
random-logit test for `camcli evaluate`."""

from .baselines import BASELINE_MAPS, baseline_maps
from .complexity import complexity, sparseness
from .faithfulness import BASELINES, Curves, Road, deletion_insertion, drop_increase, impute, road
from .localisation import energy_pointing, iou, pointing, relevance_mass, relevance_rank
from .logit import other_classes, random_logit
from .sanity import cascade, spearman, ssim

__all__ = [
    "BASELINES",
    "BASELINE_MAPS",
    "Curves",
    "Road",
    "baseline_maps",
    "cascade",
    "complexity",
    "deletion_insertion",
    "drop_increase",
    "energy_pointing",
    "impute",
    "iou",
    "other_classes",
    "pointing",
    "random_logit",
    "relevance_mass",
    "relevance_rank",
    "road",
    "sparseness",
    "spearman",
    "ssim",
]
