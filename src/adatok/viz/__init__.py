"""Pictures: readable labelled strips, and merge maps of token reduction."""

from .figure import enlarge, labelled_strip, mark, stack_rows
from .merges import merge_figure, merge_map, patch_groups, split_map

__all__ = ["enlarge", "labelled_strip", "mark", "merge_figure", "merge_map", "patch_groups", "split_map",
           "stack_rows"]
