"""The documents a client sends, before they cost anything: parsed and validated once
(bounded caches), refused early when their shape alone would make validation expensive,
and validated under a deadline with no schema hints when introspection is off.

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

A refused document is answered with ``DOCUMENT_TOO_COMPLEX`` and never validated.
Validation of what passes carries a deadline (``VALIDATION_TIMEOUT``). Documents that miss
the cache are charged to the client's rate-limit bucket before they are parsed
(``api/guard.py``), refused ones more, so a client sending ever-new bad documents runs out.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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
    parse,
    validate,
)
from graphql.validation import ASTValidationRule, ValidationContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

MAX_SELECTIONS = 200
MAX_SAME_NAME = 10
MAX_EXPANDED_FIELDS = 10_000
MAX_WEIGHT = 4_000
MAX_FRAGMENTS = 100
MAX_SPREADS_PER_SET = 50
MAX_DIRECTIVES = 5
# A last resort: the shape limits above keep validation of what passes to a few ms (the
# dearest shapes allowed measured 3-12 ms); a wall-clock bound tighter than this would
# refuse ordinary documents on a loaded machine.
VALIDATION_TIMEOUT_S = 2.0

# Bounded by entries and by bytes; a document longer than ``MAX_CACHED_CHARS`` is parsed
# and validated every time, never kept. A parsed document takes a multiple of its text in
# memory: ``BYTES_PER_CHAR`` is that multiple, measured on the examples (about 40).
CACHE_ENTRIES = 512
CACHE_BYTES = 64 * 1024 * 1024
MAX_CACHED_CHARS = 32_000
BYTES_PER_CHAR = 48

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """An LRU map bounded by entries and by the total of its items' sizes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped


@dataclass
class Checked:
    """A parsed document, what its shape says, and its validation per rule set."""

    document: DocumentNode
    problem: GraphQLError | None
    validations: dict[tuple[Any, ...], list[GraphQLError]] = field(default_factory=dict)


DOCUMENTS: BoundedCache[str, Checked] = BoundedCache(CACHE_ENTRIES, CACHE_BYTES)


def is_cached(query: str) -> bool:
    return DOCUMENTS.get(query) is not None


def parsed(query: str, max_tokens: int | None) -> tuple[Checked, bool]:
    """The document of ``query`` and whether it came from the cache (a GraphQLError when it
    does not parse; the token limit's error carries ``TOO_MANY_TOKENS``)."""
    found = DOCUMENTS.get(query)
    if found is not None:
        return found, True
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError as error:
        if "tokens. Parsing aborted." in error.message:
            raise GraphQLError(error.message, extensions={"code": "TOO_MANY_TOKENS"}) from None
        raise
    checked = Checked(document, shape_problem(document))
    if len(query) <= MAX_CACHED_CHARS:
        DOCUMENTS.put(query, checked, len(query) * BYTES_PER_CHAR)
    return checked, False


# -- the shape of a document ----------------------------------------------------------------


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "DOCUMENT_TOO_COMPLEX"})


def shape_problem(document: DocumentNode) -> GraphQLError | None:
    """Why validating ``document`` would be too dear, or ``None``. Linear in its size."""
    fragments = {definition.name.value: definition for definition in document.definitions
                 if isinstance(definition, FragmentDefinitionNode)}
    if len(fragments) > MAX_FRAGMENTS:
        return too_complex(f"A document may define at most {MAX_FRAGMENTS} fragments.")
    shape = _Shape(fragments)
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
                shape.directives(definition.directives)
                shape.selection_set(definition.selection_set)
        expanded = sum(shape.expanded(definition.selection_set)
                       for definition in document.definitions
                       if isinstance(definition, OperationDefinitionNode))
    except _TooComplex as refused:
        return too_complex(refused.message)
    weight = sum(shape.weight(definition.selection_set) for definition in document.definitions
                 if isinstance(definition, OperationDefinitionNode))
    if weight > MAX_WEIGHT:
        return too_complex("Too many fields of the same name at nested levels: validating "
                           "this document would compare too many pairs of fields.")
    if expanded > MAX_EXPANDED_FIELDS:
        return too_complex(f"The operations select {expanded} fields once fragments are "
                           f"expanded; at most {MAX_EXPANDED_FIELDS}.")
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
                raise _TooComplex(f"The field '{name}' is selected more than "
                                  f"{MAX_SAME_NAME} times in one selection set, fragments "
                                  "included.")
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
                    raise _TooComplex(f"At most {MAX_SPREADS_PER_SET} fragment spreads in "
                                      "one selection set.")
                found.extend(self._fragment_fields(selection.name.value))
            if len(found) > MAX_SELECTIONS:
                raise _TooComplex(f"At most {MAX_SELECTIONS} fields in one selection set, "
                                  "fragments included.")
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
                raise _TooComplex(f"At most {MAX_SELECTIONS} selections in one selection "
                                  "set.")
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


# -- validation under a deadline, without suggestions ----------------------------------------

EXTRA_RULES: tuple[type[ASTValidationRule], ...] = (MaybeNullValidationRule,
                                                    OneOfInputValidationRule)
SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class _ValidationTimeout(Exception):
    pass


class DeadlineRule(ASTValidationRule):
    """Stops validation that runs past ``VALIDATION_TIMEOUT_S`` (checked at every node)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.deadline = time.monotonic() + VALIDATION_TIMEOUT_S

    def enter(self, *args: Any) -> None:
        if time.monotonic() > self.deadline:
            raise _ValidationTimeout


def validated(schema: Any, checked: Checked, rules: tuple[type[ASTValidationRule], ...],
              *, hide_suggestions: bool) -> list[GraphQLError]:
    """The validation errors of ``checked`` under ``rules`` (kept with the document)."""
    key = (rules, hide_suggestions)
    if key in checked.validations:
        return checked.validations[key]
    try:
        errors = validate(schema, checked.document, (*rules, *EXTRA_RULES, DeadlineRule),
                          hide_suggestions=hide_suggestions)
    except _ValidationTimeout:  # not kept: a slow moment is no verdict on the document
        return [too_complex(f"Validating this document took longer than "
                            f"{VALIDATION_TIMEOUT_S * 1000:g} ms; simplify it.")]
    if hide_suggestions:
        errors = [without_suggestion(error) for error in errors]
    checked.validations[key] = errors
    return errors


def without_suggestion(error: GraphQLError) -> GraphQLError:
    """``error`` without a "Did you mean …?" (names of the schema) in its message."""
    message = SUGGESTION.sub("", error.message)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


__all__ = ["DOCUMENTS", "BoundedCache", "Checked", "parsed", "shape_problem", "validated",
           "without_suggestion"]
