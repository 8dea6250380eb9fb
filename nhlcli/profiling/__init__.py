"""Parameters, fvcore MACs (composed per distinct block shape, nothing allocated) and latency.

`profile_report(arch, tree, subset_class_ids, img_size)` gives the ResNet50 / full / cutout rows;
`compose_profile(preset, nodes_per_level, k, img_size)` one network, part by part.
"""

from nhlcli.profiling.compose import ModelProfile, PartProfile, compose_profile
from nhlcli.profiling.report import profile_report

__all__ = ["ModelProfile", "PartProfile", "compose_profile", "profile_report"]
