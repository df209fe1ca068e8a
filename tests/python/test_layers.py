"""The package's layers (docs/architecture.md, "The Python package, by task"): a module imports
only from its own layer or below, so no estimator module is imported by a solver, a cost, an
operator or a dataset; and every dataset is defined in ``otinverse.datasets``."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "otinverse"

#: Module prefix (dotted, under otinverse) → layer; the longest matching prefix wins.
LAYERS = {
    "_core": 0,
    "_validation": 0,
    "_deprecated": 0,
    "solvers": 1,
    "costs": 1,
    "imaging._operators": 1,
    "datasets": 2,
    "imaging": 3,
    "sparsify": 3,
    "classification": 3,
    "da": 3,
    "unfolding": 3,
    "learn": 3,
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    match = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[match]


def _imports(path: Path, module: str):
    """The otinverse modules (dotted, under otinverse) that ``path`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("otinverse."):
                target = node.module.removeprefix("otinverse.")
            else:
                continue
            names = [a.name for a in node.names] if not node.module else [None]
            for name in names:
                yield f"{target}.{name}".strip(".") if name else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("otinverse."):
                    yield alias.name.removeprefix("otinverse.")


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_imports_only_its_layer_or_below(path):
    module = _name(path)
    own = _layer(module)
    above = {t for t in _imports(path, module) if t and _layer(t) > own}
    assert not above, f"{module} (layer {own}) imports a higher layer: {sorted(above)}"


def test_every_dataset_lives_in_datasets():
    stray = [
        f"{_name(path)}.{node.name}"
        for path in MODULES
        if not _name(path).startswith("datasets")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith(("make_", "load_"))
    ]
    assert not stray
