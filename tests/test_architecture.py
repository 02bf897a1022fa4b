"""The library's layers (docs/architecture.md): a module imports only modules of lower
layers, every module is placed, and the modules the workflow imports stay light."""

import ast
import re
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "ptycho_lib"


def layers() -> dict[str, int]:
    """Module -> layer, from the table in docs/architecture.md."""
    text = (REPO / "docs/architecture.md").read_text()
    out = {}
    for layer, modules in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.M):
        for name in re.findall(r"`(\w+)`", modules):
            out[name] = int(layer)
    return out


def imports(module: str) -> set[str]:
    """The package's own modules that `module` imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("ptycho_lib")):
            base = (node.module or "").removeprefix("ptycho_lib").lstrip(".")
            found |= {base.split(".")[0]} if base else {a.name if a.name != "__version__" else "__init__"
                                                        for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ptycho_lib.")}
    return found


def test_every_module_is_placed_in_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(layers()), (modules ^ set(layers()))


def test_modules_import_only_lower_layers():
    layer = layers()
    wrong = [f"{m} (layer {layer[m]}) imports {i} (layer {layer[i]})"
             for m in layer for i in imports(m) if layer[i] >= layer[m]]
    assert not wrong, wrong


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a module that imports one of a higher layer is caught."""
    fake = tmp_path / "ptycho_lib"
    fake.mkdir()
    for p in PACKAGE.glob("*.py"):
        (fake / p.name).write_text(p.read_text())
    (fake / "geometry.py").write_text((fake / "geometry.py").read_text() + "\nfrom .training import train\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    layer = layers()
    assert [i for i in imports("geometry") if layer[i] >= layer["geometry"]] == ["training"]


def test_what_the_workflow_imports_loads_no_numerical_package():
    code = ("import sys, ptycho_lib.config, ptycho_lib.file_types; "
            "print(sorted(m for m in ('numpy', 'torch', 'h5py', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
