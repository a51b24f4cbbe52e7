"""The shape of a document, before validation: refused early when its shape alone would
make validation expensive (``DOCUMENT_TOO_COMPLEX``), never validated.

graphql-core's validation is not linear: ``OverlappingFieldsCanBeMergedRule`` compares
fields that share a response name pairwise, so a document of ~1,000 copies of
``viewer { kind }`` (4,000 tokens, under the token limit) takes seconds of CPU on the event
loop. ``shape_problem`` counts, in one pass over the AST, what makes validation dear:

- selections in one selection set (``MAX_SELECTIONS``), and fields of one response name in
  one set (``MAX_SAME_NAME``), fragments merged in as validation merges them;
- an estimate of the pairs of fields validation compares (``MAX_WEIGHT``): same-named
  fields pairwise, each pair's sub-selections in turn;
- fields after expanding fragments (``MAX_EXPANDED_FIELDS``, fragment sizes memoised);
- fragment definitions and spreads per set, directives per location.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
)

MAX_SELECTIONS = 200
MAX_SAME_NAME = 10
MAX_EXPANDED_FIELDS = 10_000
MAX_WEIGHT = 4_000
MAX_FRAGMENTS = 100
MAX_SPREADS_PER_SET = 50
MAX_DIRECTIVES = 5


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "DOCUMENT_TOO_COMPLEX"})


def shape_problem(document: DocumentNode) -> GraphQLError | None:
    """Why validating ``document`` would be too dear, or ``None``. Linear in its size."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    if len(fragments) > MAX_FRAGMENTS:
        return too_complex(f"A document may define at most {MAX_FRAGMENTS} fragments.")
    shape = _Shape(fragments)
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
                shape.directives(definition.directives)
                shape.selection_set(definition.selection_set)
        expanded = sum(
            shape.expanded(definition.selection_set)
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
        )
    except _TooComplex as refused:
        return too_complex(refused.message)
    weight = sum(
        shape.weight(definition.selection_set)
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    )
    if weight > MAX_WEIGHT:
        return too_complex(
            "Too many fields of the same name at nested levels: validating "
            "this document would compare too many pairs of fields."
        )
    if expanded > MAX_EXPANDED_FIELDS:
        return too_complex(
            f"The operations select {expanded} fields once fragments are "
            f"expanded; at most {MAX_EXPANDED_FIELDS}."
        )
    return None


class _TooComplex(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Shape:
    fragments: dict[str, FragmentDefinitionNode]
    sizes: dict[str, int] = field(default_factory=dict)
    top_fields: dict[str, list[FieldNode]] = field(default_factory=dict)
    weights: dict[int, int] = field(default_factory=dict)
    set_fields: dict[int, list[FieldNode]] = field(default_factory=dict)
    expanding: set[str] = field(default_factory=set)

    def directives(self, directives: Sequence[DirectiveNode] | None) -> None:
        if directives is not None and len(directives) > MAX_DIRECTIVES:
            raise _TooComplex(f"At most {MAX_DIRECTIVES} directives in one place.")

    def selection_set(self, selection_set: SelectionSetNode | None) -> None:
        """Counts of one set as validation merges it: inline fragments and the fields of
        spread fragments count in the set."""
        if selection_set is None:
            return
        names: dict[str, int] = {}
        for node in self.fields(selection_set):
            name = (node.alias or node.name).value
            names[name] = names.get(name, 0) + 1
            if names[name] > MAX_SAME_NAME:
                raise _TooComplex(
                    f"The field '{name}' is selected more than "
                    f"{MAX_SAME_NAME} times in one selection set, fragments "
                    "included."
                )
        for selection in self._flattened(selection_set):
            self.directives(selection.directives)
            if isinstance(selection, FieldNode):
                self.selection_set(selection.selection_set)

    def fields(self, selection_set: SelectionSetNode) -> list[FieldNode]:
        """The fields at the top of ``selection_set`` once fragments are merged in
        (computed once per set: the counts and the weight both read them)."""
        key = id(selection_set)
        if key not in self.set_fields:
            self.set_fields[key] = self._merged_fields(selection_set)
        return self.set_fields[key]

    def _merged_fields(self, selection_set: SelectionSetNode) -> list[FieldNode]:
        found: list[FieldNode] = []
        spreads = 0
        for selection in self._flattened(selection_set):
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, FragmentSpreadNode):
                spreads += 1
                if spreads > MAX_SPREADS_PER_SET:
                    raise _TooComplex(
                        f"At most {MAX_SPREADS_PER_SET} fragment spreads in one selection set."
                    )
                found.extend(self._fragment_fields(selection.name.value))
            if len(found) > MAX_SELECTIONS:
                raise _TooComplex(
                    f"At most {MAX_SELECTIONS} fields in one selection set, fragments included."
                )
        return found

    def _fragment_fields(self, name: str) -> list[FieldNode]:
        if name in self.top_fields:
            return self.top_fields[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return []
        self.expanding.add(name)
        self.top_fields[name] = found = self.fields(fragment.selection_set)
        self.expanding.discard(name)
        return found

    def weight(self, selection_set: SelectionSetNode | None) -> int:
        """An estimate of the pairs of fields validation compares below ``selection_set``:
        fields sharing a response name are compared pairwise, and each pair compares
        their sub-selections in turn."""
        if selection_set is None:
            return 0
        key = id(selection_set)
        if key not in self.weights:
            groups: dict[str, list[FieldNode]] = {}
            for node in self.fields(selection_set):
                groups.setdefault((node.alias or node.name).value, []).append(node)
            total = 0
            for group in groups.values():
                below = max(self.weight(node.selection_set) for node in group)
                total += len(group) ** 2 * (1 + below)
                if total > MAX_WEIGHT:
                    break
            self.weights[key] = total
        return self.weights[key]

    def _flattened(self, selection_set: SelectionSetNode) -> Iterator[SelectionNode]:
        count = 0
        pending = list(selection_set.selections)
        while pending:
            selection = pending.pop()
            count += 1
            if count > MAX_SELECTIONS:
                raise _TooComplex(f"At most {MAX_SELECTIONS} selections in one selection set.")
            if isinstance(selection, InlineFragmentNode):
                self.directives(selection.directives)
                pending.extend(selection.selection_set.selections)
            else:
                yield selection

    def expanded(self, selection_set: SelectionSetNode | None) -> int:
        """Fields selected with every fragment spread expanded (each fragment sized once);
        a cycle counts nothing here (validation reports it)."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1 + self.expanded(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.expanded(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value)
            if total > MAX_EXPANDED_FIELDS:
                return total
        return total

    def _fragment(self, name: str) -> int:
        if name in self.sizes:
            return self.sizes[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return 0
        self.expanding.add(name)
        self.sizes[name] = size = self.expanded(fragment.selection_set)
        self.expanding.discard(name)
        return size


__all__ = ["MAX_SAME_NAME", "MAX_SELECTIONS", "shape_problem", "too_complex"]
