"""The packages form layers, and no package imports one above it (issue 16): ``archspec`` at the bottom
(the spec, errors, the safe framework imports, progress bars), the three renderers on it,
``weight_transfer`` on them, ``crossframe`` on top; ``benchmarks`` and ``scripts`` use any of them, and
``crossframe bench`` runs the benchmarks, which import nothing of ``crossframe`` (no cycle). Every
import statement counts, those inside functions too. Read from the source (no import runs)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# each package: the packages of ours it may import
ALLOWED = {
    "archspec": set(),
    "torch_impl": {"archspec"},
    "tf_impl": {"archspec"},
    "jax_impl": {"archspec"},
    "weight_transfer": {"archspec", "torch_impl", "tf_impl", "jax_impl"},
    "crossframe": {"archspec", "torch_impl", "tf_impl", "jax_impl", "weight_transfer", "benchmarks"},
    "benchmarks": {"archspec", "torch_impl", "tf_impl", "jax_impl", "weight_transfer"},
}


def imports_of(path):
    """``{(top-level package, line)}`` of every absolute import in the file at ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(root=ROOT):
    out = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            for top, line in sorted(imports_of(path)):
                if top in ALLOWED and top != package and top not in allowed:
                    out.append(f"{path.relative_to(root)}:{line} imports {top}")
    return out


def test_no_package_imports_one_above_it():
    assert violations() == []


def test_a_planted_upward_import_is_found(tmp_path):
    for package in ALLOWED:
        (tmp_path / package).mkdir()
    (tmp_path / "weight_transfer" / "late.py").write_text("def f():\n    from crossframe.frameworks import import_tf\n")
    (tmp_path / "benchmarks" / "cycle.py").write_text("import crossframe.progress\n")
    assert sorted(violations(tmp_path)) == ["benchmarks/cycle.py:1 imports crossframe",
                                            "weight_transfer/late.py:2 imports crossframe"]
