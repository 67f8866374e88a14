"""Installing a plugin for a test: a distribution's metadata (a `.dist-info` folder with its
entry points, as pip writes it) and its source, put on sys.path for as long as the context
lasts; archc forgets its plugins before and after (archc.compiler.plugins.reset)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from archc.compiler import plugins
from tests.conftest import ROOT

EXAMPLE = ROOT / "plugins" / "archc-example-ops"
EXAMPLE_DIST = "archc-example-ops"


def write_dist_info(site: Path, dist: str, version: str, entry_points_txt: dict[str, str]) -> Path:
    """A `<dist>-<version>.dist-info` in `site` declaring `name = value` entry points of
    group archc.ops."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points_txt.items())
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}", encoding="utf-8")
    return info


@contextlib.contextmanager
def installed(site: Path, *paths: Path) -> Iterator[None]:
    """`site` (with its dist-info folders) and `paths` (the plugins' source) on sys.path."""
    added = [str(p) for p in (site, *paths)]
    sys.path[:0] = added
    plugins.reset()
    try:
        yield
    finally:
        for p in added:
            sys.path.remove(p)
        for name in [m for m in sys.modules if m.split(".")[0] in _modules(paths)]:
            del sys.modules[name]
        plugins.reset()


def _modules(paths: tuple[Path, ...]) -> set[str]:
    return {p.stem for path in paths if path.is_dir() for p in path.iterdir()}


def example_installed() -> bool:
    return any(ep.dist is not None and ep.dist.name == EXAMPLE_DIST for ep in _archc_ops())


def _archc_ops() -> list[object]:
    return list(entry_points(group=plugins.GROUP))  # type: ignore[arg-type]


@contextlib.contextmanager
def example_plugin(site: Path) -> Iterator[None]:
    """The example plugin (plugins/archc-example-ops), installed as pip would where it is
    not (CI installs it: scripts/setup.sh)."""
    if example_installed():
        plugins.reset()
        yield
        return
    write_dist_info(site, EXAMPLE_DIST, "0.1.0", {"example": "archc_example_ops:OPS"})
    with installed(site, EXAMPLE / "src"):
        yield
