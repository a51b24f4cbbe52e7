"""Validation of a document whose shape passed (``api/shape.py``): graphql-core's rules
and strawberry's, under a deadline (``VALIDATION_TIMEOUT_S``), kept with the parsed
document per rule set, and with no schema hints ("Did you mean …?") when introspection is
off."""

from __future__ import annotations

import re
import time
from typing import Any

from graphql import GraphQLError, validate
from graphql.validation import ASTValidationRule, ValidationContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from accountgraph.api.documents import Checked
from accountgraph.api.shape import too_complex

# A last resort: the shape limits keep validation of what passes to a few ms (the dearest
# shapes allowed measured 3-12 ms); a wall-clock bound tighter than this would refuse
# ordinary documents on a loaded machine.
VALIDATION_TIMEOUT_S = 2.0

EXTRA_RULES: tuple[type[ASTValidationRule], ...] = (
    MaybeNullValidationRule,
    OneOfInputValidationRule,
)
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


def validated(
    schema: Any,
    checked: Checked,
    rules: tuple[type[ASTValidationRule], ...],
    *,
    hide_suggestions: bool,
) -> list[GraphQLError]:
    """The validation errors of ``checked`` under ``rules`` (kept with the document)."""
    key = (rules, hide_suggestions)
    if key in checked.validations:
        return checked.validations[key]
    try:
        errors = validate(
            schema,
            checked.document,
            (*rules, *EXTRA_RULES, DeadlineRule),
            hide_suggestions=hide_suggestions,
        )
    except _ValidationTimeout:  # not kept: a slow moment is no verdict on the document
        return [
            too_complex(
                f"Validating this document took longer than "
                f"{VALIDATION_TIMEOUT_S * 1000:g} ms; simplify it."
            )
        ]
    if hide_suggestions:
        errors = [without_suggestion(error) for error in errors]
    checked.validations[key] = errors
    return errors


def coded(error: GraphQLError, code: str = "GRAPHQL_VALIDATION_FAILED") -> GraphQLError:
    """``error`` with ``extensions.code`` (the limits' rules set their own; the rest of
    validation is GRAPHQL_VALIDATION_FAILED, as Apollo Server names it)."""
    if (error.extensions or {}).get("code"):
        return error
    return GraphQLError(
        error.message,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        error.original_error,
        {**(error.extensions or {}), "code": code},
    )


def without_suggestion(error: GraphQLError) -> GraphQLError:
    """``error`` without a "Did you mean …?" (names of the schema) in its message."""
    message = SUGGESTION.sub("", error.message)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


__all__ = ["VALIDATION_TIMEOUT_S", "coded", "validated", "without_suggestion"]
