"""The estimated cost of the GraphQL documents the tests and benchmarks send.

    .venv/bin/python -m bench.costs [--top 5] [DIR ...]

Finds every string in the Python files under tests/ and bench/ (or the DIRs given) that is
a valid document of the API's schema, estimates each of its operations as
api/extensions/cost.py does, and prints the heaviest, with the shape measures the other
limits cap (depth, aliases, directives, tokens) at their largest over all of them.
tests/test_cost.py is left out: its documents are made to sit at or over the limits.

Variables are unknown here: each operation is estimated as sent without them (their
defaults; a connection without `first` is a page of 20), the ranking's figure, and again
with every `first` variable at the largest page (100), the most a legitimate client asks
for: what MAX_QUERY_COST must leave room for.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    DocumentNode,
    GraphQLError,
    IntValueNode,
    OperationDefinitionNode,
    Source,
    TokenKind,
    parse,
    validate,
)
from graphql.language.lexer import Lexer

from api.extensions.cost import cost_model
from api.extensions.limits import DEFAULT_LIMITS, measure
from api.schema import schema
from resolvers.pagination import MAX_PAGE

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = {ROOT / "tests" / "test_cost.py"}


@dataclass(frozen=True)
class Estimate:
    where: str
    operation: str
    cost: int  # as sent without variables
    cost_at_max_page: int  # every `first` variable at MAX_PAGE
    depth: int
    aliases: int
    directives: int
    tokens: int
    text: str


def strings(path: Path) -> Iterator[tuple[int, str]]:
    """The string constants of a Python file, with their line."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{" in node.value:
            yield node.lineno, node.value


def document_of(text: str) -> DocumentNode | None:
    """The text as a valid document of the schema, else None."""
    try:
        document = parse(text)
    except GraphQLError:
        return None
    if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        return None
    return None if validate(schema._schema, document) else document


def tokens(text: str) -> int:
    lexer, count = Lexer(Source(text)), 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


def first_variables(operation: OperationDefinitionNode) -> dict[str, int]:
    """Each variable passed as a `first` argument, at MAX_PAGE."""
    found: dict[str, int] = {}

    def visit(node: object) -> None:
        for selection in getattr(getattr(node, "selection_set", None), "selections", ()) or ():
            for argument in getattr(selection, "arguments", ()) or ():
                value = argument.value
                if argument.name.value == "first" and not isinstance(value, IntValueNode):
                    name = getattr(getattr(value, "name", None), "value", None)
                    if name:
                        found[name] = MAX_PAGE
            visit(selection)

    visit(operation)
    return found


def estimates(roots: list[Path]) -> list[Estimate]:
    model = cost_model(schema._schema)
    seen: set[str] = set()
    found = []
    for root in roots:
        for path in sorted(set(root.rglob("*.py")) - LEFT_OUT):
            for line, text in strings(path):
                if text in seen or (document := document_of(text)) is None:
                    continue
                seen.add(text)
                shapes = measure(document)
                for definition in document.definitions:
                    if not isinstance(definition, OperationDefinitionNode):
                        continue
                    name = definition.name.value if definition.name else None
                    shape = shapes[name or "anonymous"]
                    found.append(
                        Estimate(
                            where=f"{path.relative_to(ROOT)}:{line}",
                            operation=name or "(anonymous)",
                            cost=model.cost(document, name),
                            cost_at_max_page=model.cost(
                                document, name, first_variables(definition)
                            ),
                            depth=shape.depth,
                            aliases=shape.aliases,
                            directives=shape.directives,
                            tokens=tokens(text),
                            text=" ".join(text.split()),
                        )
                    )
    return found


def over_a_limit(estimate: Estimate) -> bool:
    """Refused as sent, under the default limits."""
    limits = DEFAULT_LIMITS
    return (
        estimate.cost > limits.max_cost
        or estimate.depth > limits.max_depth
        or estimate.aliases > limits.max_aliases
        or estimate.directives > limits.max_directives
        or estimate.tokens > limits.max_tokens
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("dirs", nargs="*", type=Path, default=[ROOT / "tests", ROOT / "bench"])
    args = parser.parse_args(argv)
    found = estimates(args.dirs)
    if not found:
        print("no document found", file=sys.stderr)
        return 1
    limits = DEFAULT_LIMITS
    over = [estimate for estimate in found if over_a_limit(estimate)]
    within = [estimate for estimate in found if not over_a_limit(estimate)]
    heaviest = sorted(within, key=lambda e: (-e.cost, -e.cost_at_max_page, e.where))
    print(
        f"{len(found)} operations, {len(within)} within the default limits; the {args.top}"
        " heaviest of those (cost as sent / first=100):"
    )
    for rank, estimate in enumerate(heaviest[: args.top], 1):
        print(
            f"{rank}. {estimate.cost:>5} / {estimate.cost_at_max_page:>5}  "
            f"{estimate.where} {estimate.operation}"
        )
        text = estimate.text
        print(f"   {text if len(text) <= 160 else text[:157] + '...'}")
    print(
        f"{len(over)} over a default limit as the bench sees them (documents the tests send"
        " to be refused, or sized by a variable the bench does not know):"
    )
    for estimate in sorted(over, key=lambda e: e.where):
        print(f"   {estimate.cost:>5}  depth {estimate.depth:>2}  {estimate.where}")
    print("largest of those within the limits, beside the default limit:")
    for label, value, limit in (
        ("cost (first=100)", max(e.cost_at_max_page for e in within), limits.max_cost),
        ("depth", max(e.depth for e in within), limits.max_depth),
        ("aliases", max(e.aliases for e in within), limits.max_aliases),
        ("directives", max(e.directives for e in within), limits.max_directives),
        ("tokens", max(e.tokens for e in within), limits.max_tokens),
    ):
        print(f"  {label:<17} {value:>6}  (limit {limit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
