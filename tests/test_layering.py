"""The domain stands alone: models/ knows nothing of GraphQL, HTTP or the settings object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parent.parent / "models"
EDGE_PACKAGES = ("api", "resolvers", "subscriptions", "strawberry", "graphql", "starlette")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):  # functions' own imports count too
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _domain_modules() -> list[Path]:
    return sorted(p for p in MODELS.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", _domain_modules(), ids=lambda p: p.name)
def test_a_domain_module_imports_nothing_of_the_edge(path: Path) -> None:
    offending = [
        f"{path.name}:{line} imports {module}"
        for line, module in _imported_modules(path)
        if module.split(".")[0] in EDGE_PACKAGES
    ]

    assert offending == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from api.config import Settings\n    import resolvers.ids\n")

    assert _imported_modules(module) == [(2, "api.config"), (3, "resolvers.ids")]


def test_domain_errors_name_fields_by_their_domain_names() -> None:
    camel_case_fields = []
    for path in _domain_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "field":
                value = node.value
                if (
                    isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                    and value.value != value.value.lower()
                ):
                    camel_case_fields.append(f"{path.name}:{value.lineno} {value.value}")

    assert camel_case_fields == []
