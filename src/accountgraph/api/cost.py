"""The calculated cost of an operation, in the manner of Shopify's: what the maximum per
operation and the per-principal budget per minute (``api/budget.py``) are counted in.

Cost of an operation, walked over its selections (fragments and inline fragments
included, aliases counted as the fields they are) against the schema:

- a field whose type is an object, interface or union costs ``OBJECT_COST`` (1) plus its
  children; scalars and enums cost 0;
- a connection (a field with a ``first`` argument returning ``…Connection``) multiplies
  what its ``edges`` (or ``nodes``) select by its page size: ``first``, or
  ``DEFAULT_PAGE`` (50) when absent, capped at ``MAX_PAGE`` (500);
- any other list of objects (``sites``, ``billTos``, ``invitations`` …) counts an assumed
  ``LIST_SIZE`` (10) items;
- over an interface or union (``node(id)``), the dearest possible type counts;
- each mutation field adds ``MUTATION_COST`` (10) on top of its payload's cost.

So ``accounts(first: 100) { edges { node { id sites { name } } } pageInfo { hasNextPage } }``
costs 1 + 100 * (1 + 1 + 10 * 1) + 1 = 1,202. ``@skip``/``@include`` are not evaluated
(the field counts). Subscriptions are not costed (bounded per connection instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_abstract_type,
    is_list_type,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.utilities import get_operation_ast, value_from_ast_untyped

from accountgraph.api.connections import DEFAULT_PAGE, MAX_PAGE

OBJECT_COST = 1
LIST_SIZE = 10
MUTATION_COST = 10


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None = None,
) -> int | None:
    """The cost of the operation ``operation_name`` of ``document`` (see the module's
    docstring); ``None`` when there is no such operation."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    # A variable the request leaves out counts with its declared default, as it runs.
    values = {
        definition.variable.name.value: value_from_ast_untyped(definition.default_value)
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }
    values.update(variables or {})
    walk = _Walk(schema, fragments, values)
    cost = walk.selections(operation.selection_set, root, None)
    if operation.operation is OperationType.MUTATION:
        cost += MUTATION_COST * walk.fields_of(operation.selection_set, root)
    return cost


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    # fragment, concrete type, page → cost: a fragment spread many times is walked once
    memo: dict[tuple[str, str, int | None], int] = field(default_factory=dict)
    visiting: set[str] = field(default_factory=set)

    def selections(self, selection_set: SelectionSetNode, parent: Any, page: int | None) -> int:
        if is_abstract_type(parent):
            return max(
                (
                    self.concrete(selection_set, possible, page)
                    for possible in self.schema.get_possible_types(parent)
                ),
                default=0,
            )
        return (
            self.concrete(selection_set, parent, page)
            if isinstance(parent, GraphQLObjectType)
            else 0
        )

    def concrete(
        self, selection_set: SelectionSetNode, parent: GraphQLObjectType, page: int | None
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                if self.applies(selection.type_condition, parent):
                    total += self.concrete(selection.selection_set, parent, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value, parent, page)
        return total

    def spread(self, name: str, parent: GraphQLObjectType, page: int | None) -> int:
        fragment = self.fragments.get(name)
        if (
            fragment is None
            or name in self.visiting
            or not self.applies(fragment.type_condition, parent)
        ):
            return 0
        key = (name, parent.name, page)
        if key not in self.memo:
            self.visiting.add(name)
            self.memo[key] = self.concrete(fragment.selection_set, parent, page)
            self.visiting.discard(name)
        return self.memo[key]

    def applies(self, condition: NamedTypeNode | None, parent: GraphQLObjectType) -> bool:
        if condition is None or condition.name.value == parent.name:
            return True
        wanted = self.schema.get_type(condition.name.value)
        return is_abstract_type(wanted) and self.schema.is_sub_type(wanted, parent)

    def field(self, node: FieldNode, parent: GraphQLObjectType, page: int | None) -> int:
        name = node.name.value
        output: GraphQLOutputType
        arguments: Mapping[str, Any]
        if name == "__schema":
            output, arguments = SchemaMetaFieldDef.type, {}
        elif name == "__type":
            output, arguments = TypeMetaFieldDef.type, {}
        elif name in parent.fields:
            output, arguments = parent.fields[name].type, parent.fields[name].args
        else:
            return 0  # __typename, or a field validation refuses anyway
        named = get_named_type(output)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
            return 0
        multiplier, child_page = 1, None
        if named.name.endswith("Connection") and "first" in arguments:
            child_page = self.page_size(node)
        elif is_list_type(get_nullable_type(output)):
            multiplier = page if page is not None and name in ("edges", "nodes") else LIST_SIZE
        children = (
            self.selections(node.selection_set, named, child_page) if node.selection_set else 0
        )
        return multiplier * (OBJECT_COST + children)

    def page_size(self, node: FieldNode) -> int:
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value)
        if not isinstance(value, int) or isinstance(value, bool):
            return DEFAULT_PAGE
        return max(0, min(value, MAX_PAGE))

    def fields_of(self, selection_set: SelectionSetNode, parent: GraphQLObjectType) -> int:
        """How many root fields (mutations) the operation runs, fragments included."""
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += not selection.name.value.startswith("__")
            elif isinstance(selection, InlineFragmentNode):
                count += self.fields_of(selection.selection_set, parent)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in self.visiting:
                    self.visiting.add(selection.name.value)
                    count += self.fields_of(fragment.selection_set, parent)
                    self.visiting.discard(selection.name.value)
        return count


__all__ = ["LIST_SIZE", "MUTATION_COST", "OBJECT_COST", "query_cost"]
