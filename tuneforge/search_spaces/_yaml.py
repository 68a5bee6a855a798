"""A strict YAML loader for the files users hand tuneforge (spaces, cluster configs).

PyYAML's ``safe_load`` keeps the last of two equal keys without a word, composes a "billion
laughs" document (aliases of aliases, each nine times) as a small graph that anything walking
it expands to 9^9 nodes, recurses once per level of nesting until Python's recursion limit,
and lets the ValueError of a scalar that is not what it looks like (``2001-13-45``) escape.
:func:`load_yaml` refuses each with a ``yaml.YAMLError`` that names the line.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "MAX_NODES", "load_yaml"]

MAX_DEPTH = 20
"""Deepest nesting of lists and mappings, a scalar counting as a level, aliases expanded (a
space needs 4 or 5, this repository's ``ray up`` configs up to 8)."""
MAX_NODES = 100_000
"""Most nodes a document may hold with its aliases expanded (a bundled space has under 100)."""
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_MAX_INT_CHARS = 1000
"""An integer literal longer than this is no bound: Python prints no integer of over 4300
digits (a ValueError, even in an error message), and 0x with 1000 digits has 1200."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that measures every node as it is composed (its size and depth with aliases
    expanded, memoised by node), and refuses duplicate keys and over-long integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composing_depth = 0
        self._shapes: dict[int, tuple[int, int]] = {}
        """id(node) -> (nodes, depth) of the node with its aliases expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        is_alias = self.check_event(yaml.AliasEvent)
        if self._composing_depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._composing_depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._composing_depth -= 1
        if is_alias:
            if id(node) not in self._shapes:  # an anchor still being composed: a cycle
                raise yaml.composer.ComposerError(None, None, "an alias refers to a collection that "
                                                  "contains it", node.start_mark)
            return node
        self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        shapes = [self._shapes[id(child)] for child in children]
        n_nodes = 1 + sum(n for n, _ in shapes)
        depth = 1 + max((d for _, d in shapes), default=0)
        if n_nodes > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_NODES} values once its aliases "
                                              "are expanded (an alias bomb?)", node.start_mark)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels once "
                                              "its aliases are expanded", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            self._check_unique_keys(node)
        self._shapes[id(node)] = (n_nodes, depth)

    def _check_unique_keys(self, node: yaml.MappingNode) -> None:
        """Refuse a key given twice; checked as composed, before a merge (``<<: *defaults``,
        whose keys those beside it may override) rewrites the mapping."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # a list or mapping as a key: SafeLoader refuses it as unhashable
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the first would be ignored)", key_node.start_mark)
            seen.add(key)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """SafeLoader's, with the ValueError of a scalar that is not what its tag says
        (``2001-13-45``, ``!!int x``) as a YAML error at its line, and integers kept short."""
        if node.tag == _INT_TAG and len(node.value) > _MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value)} characters (at most {_MAX_INT_CHARS})",
                node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problem = f"cannot read {str(node.value)[:40]!r} as {kind} ({reason})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def load_yaml(text: str) -> Any:
    """The one document in ``text``; ``yaml.YAMLError`` for invalid YAML, duplicate keys, an
    alias bomb (over :data:`MAX_NODES` values expanded) or nesting past :data:`MAX_DEPTH`."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
