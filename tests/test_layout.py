"""The layout (docs/ARCHITECTURE.md, "Layout"): compiler/ imports no backend and no framework,
nothing imports archc by the repository's folder names, and the installed package is `archc`
alone (pyproject's packages are the folders; the wheel holds `archc/` and nothing else beside
it; run from the wheel, `import compiler` fails and `python -m archc` works)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.plugin_install import EXAMPLE, example_installed

FRAMEWORKS = ("keras", "tensorflow", "torch", "jax")
PACKAGES = {"compiler": "archc.compiler", "backends": "archc.backends", "archc": "archc"}


def _module(path: Path) -> tuple[str, bool]:
    """(the installed module name of a source file of the repository, whether a package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, at any depth (a lazy import
    inside a function counts), relative ones resolved as installed."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ""
    if path.relative_to(ROOT).parts[0] in PACKAGES:
        name, is_pkg = _module(path)
        package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert package, f"{path}:{node.lineno}: a relative import outside the packages"
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from archc import backends` imports archc.backends
                yield node.lineno, f"{module}.{alias.name}"


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _under(module: str, *roots: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def test_the_compiler_imports_no_backend_and_no_framework() -> None:
    """compiler/ is spec -> IR: it imports neither the backends (nor the command line and
    pictures above them) nor a framework, not even lazily inside a function."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sources("compiler")
        for line, module in imports(path)
        if _under(module, "archc.backends", "archc.cli", "archc.graph", "archc.__main__")
        or _under(module, "backends", *FRAMEWORKS)
    ]
    assert sources("compiler") and not found, "\n".join(found)


def test_the_backends_import_nothing_above_them() -> None:
    """backends/ may import the compiler, never the command line or the pictures."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sources("backends")
        for line, module in imports(path)
        if _under(module, "archc.cli", "archc.graph", "archc.__main__")
    ]
    assert sources("backends") and not found, "\n".join(found)


def _repository_sources() -> list[Path]:
    skip = {".venv", "generated", "build", "node_modules"}
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [
            d
            for d in dirnames
            if d not in skip
            and not d.startswith(".")
            and not os.path.islink(os.path.join(dirpath, d))
        ]
        out += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(out)


def test_nothing_imports_archc_by_its_folder_names() -> None:
    """Every import names archc.compiler / archc.backends: a module imported as
    `compiler.x` too would be a second copy (a second op registry) in a checkout, and an
    ImportError installed. A branch written before the layout and merged without
    apply.sh fails here."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _repository_sources()
        for line, module in imports(path)
        if _under(module, "compiler", "backends")
    ]
    assert len(_repository_sources()) > 100 and not found, "\n".join(found)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_pyproject_packages_are_the_folders() -> None:
    """The wheel's package list (setuptools, mapped folders) is every folder with an
    __init__.py under archc/, compiler/ and backends/: a new subpackage left out of it would be
    missing from an installed archc."""
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {
        "archc": "archc",
        "archc.compiler": "compiler",
        "archc.backends": "backends",
    }
    folders = {
        _module(init)[0]
        for top in PACKAGES
        for init in (ROOT / top).rglob("__init__.py")
        if not init.relative_to(ROOT).as_posix().startswith(("archc/compiler/", "archc/backends/"))
    }
    assert set(setuptools["packages"]) == folders


def test_the_checkout_links_archc_to_its_folders() -> None:
    """In a checkout archc.compiler and archc.backends are the repository's compiler/ and
    backends/ (links), so tools that know nothing of pyproject's package-dir (mypy, a plain
    PYTHONPATH) see one package."""
    for name in ("compiler", "backends"):
        assert (ROOT / "archc" / name).resolve() == (ROOT / name).resolve()
    import archc.backends.torch.render
    import archc.compiler.ir

    assert Path(archc.compiler.ir.__file__).resolve() == ROOT / "compiler" / "ir.py"
    assert (
        Path(archc.backends.torch.render.__file__).resolve().parent == ROOT / "backends" / "torch"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """archc's wheel, built (no dependencies, no network) from a copy of the checkout's
    package sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
    out = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (found,) = out.glob("archc-*.whl")
    return found


def test_the_wheel_holds_archc_only(wheel: Path) -> None:
    """Installed, archc claims one importable name: archc (and its dist-info)."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"archc", wheel.name.split("-py3")[0] + ".dist-info"}
    expected = {
        "archc/__main__.py",
        "archc/cli.py",
        "archc/compiler/ir.py",
        "archc/compiler/ops/core.py",
        "archc/backends/torch/render.py",
        "archc/backends/proof/verify.py",
        # read as text, not imported: helpers generated files carry, templates, the viewer
        "archc/backends/torch/helpers.py",
        "archc/backends/keras/helpers.py",
        "archc/backends/templates/torch.py.jinja",
        "archc/graph_assets/dagre.min.js",
    }
    assert expected <= set(names)
    entry = zipfile.ZipFile(wheel).read(wheel.name.split("-py3")[0] + ".dist-info/entry_points.txt")
    assert "archc = archc.cli:main" in entry.decode()


def test_run_from_the_wheel_archc_works_and_compiler_is_no_name(
    wheel: Path, tmp_path: Path
) -> None:
    """The wheel's files alone (unpacked, as pip installs them; no .pth file of this
    environment runs), from a folder outside the checkout: `import compiler` and
    `import backends` fail, `python -m archc` checks, compiles (templates and helper source
    read from the package) and draws (the viewer's assets)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    # the dependencies from this environment's site-packages, without running its .pth files
    # (-S): an editable install of archc there must not answer for the wheel; the example
    # plugin's dist-info is visible there, so its source (installed editable) goes on the path
    path = [site, sysconfig.get_paths()["purelib"]]
    if example_installed():
        path.append(EXAMPLE / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args], cwd=work, env=env, capture_output=True, text=True
        )

    for name in ("compiler", "backends"):
        proc = run("-c", f"import {name}")
        assert proc.returncode == 1 and f"No module named '{name}'" in proc.stderr
    proc = run(
        "-c",
        "import archc.compiler.ir as m, archc.backends.torch.render as r\n"
        "print(m.__file__, r.__file__)",
    )
    assert proc.returncode == 0, proc.stderr
    assert all(Path(p).is_relative_to(site) for p in proc.stdout.split())
    spec = str(ROOT / "specs" / "resnet_preact.yaml")
    proc = run("-m", "archc", "check", spec)
    assert proc.returncode == 0, proc.stderr
    proc = run("-m", "archc", "compile", spec, "--backend", "torch", "-o", "out", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    assert "class " in (work / "out" / "resnet_preact_torch.py").read_text(encoding="utf-8")
    proc = run("-m", "archc", "graph", spec, "-o", "model.html")
    assert proc.returncode == 0, proc.stderr
    assert "dagre" in (work / "model.html").read_text(encoding="utf-8")


def test_no_test_shadows_the_archc_fixture() -> None:
    """`import archc.x` inside a test that takes the `archc` fixture (conftest's CLI runner)
    rebinds the name: the runner becomes the package (apply.sh imports the module under an
    alias there)."""
    found = []
    for path in sources("tests"):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, ast.FunctionDef) and "archc" in {a.arg for a in fn.args.args}:
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: import {alias.name}"
                    for node in ast.walk(fn)
                    if isinstance(node, ast.Import)
                    for alias in node.names
                    if alias.name.split(".")[0] == "archc" and alias.asname is None
                ]
    assert not found, "\n".join(found)
