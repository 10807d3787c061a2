"""Pictures: readable labelled strips, and merge maps of token reduction."""

from .figure import compare_figure, enlarge, labelled_strip, length_figure, mark, stack_rows
from .merges import merge_figure, merge_map, patch_groups, split_map

__all__ = ["compare_figure", "enlarge", "length_figure", "labelled_strip", "mark", "merge_figure", "merge_map", "patch_groups", "split_map",
           "stack_rows"]
