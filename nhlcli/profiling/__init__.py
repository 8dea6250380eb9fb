"""Parameters, MACs (composed per distinct block shape, nothing allocated) and latency.

`report.profile_report(arch, tree, subset_class_ids, img_size)` gives the baseline / full / cutout
rows; `compose.compose_profile(preset, nodes_per_level, k, img_size)` one network, part by part;
`counters.COUNTERS` the counters. The package imports nothing itself, so the CLI can read the
counter table without loading torch.
"""
