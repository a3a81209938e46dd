"""The layering of docs/design.md: a module imports only from the layers above it (and its own)."""

from __future__ import annotations

import ast
from pathlib import Path

import wattlens

LAYERS = ["core", "hw", "models", "workloads", "meter", "dvfs", "backends", "store", "runner", "analysis", "cli"]
PACKAGE = Path(wattlens.__file__).parent


def _wattlens_imports(path: Path) -> set[str]:
    """Layers named by `import wattlens.X` / `from wattlens.X import ...` anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "wattlens" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_imports_only_from_layers_above():
    violations = []
    for layer in LAYERS:
        allowed = set(LAYERS[: LAYERS.index(layer) + 1])
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            bad = {imp for imp in _wattlens_imports(path) if imp in LAYERS and imp not in allowed}
            if bad:
                violations.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)} (layer {layer})")
    assert not violations, "\n".join(violations)


def test_only_hw_nvml_imports_nvml():
    importers = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                 if "pynvml" in {a.name.split(".")[0] for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                                 if isinstance(n, ast.Import) for a in n.names}
                 | {n.module.split(".")[0] for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                    if isinstance(n, ast.ImportFrom) and n.module}]
    assert importers == ["hw/nvml.py"]
