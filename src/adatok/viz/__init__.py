"""Pictures: merge maps of token reduction (:mod:`.merges`)."""

from .merges import merge_figure, merge_map, patch_groups, split_map

__all__ = ["merge_figure", "merge_map", "patch_groups", "split_map"]
