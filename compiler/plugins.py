"""Third-party ops: installed packages that declare ops under the `archc.ops` entry point
group (docs/PLUGINS.md).

An entry point names a sequence of `OpUnit`s (or a function returning one): each op's
`OpDef` and its two emitters. The compiler takes the `OpDef`s into its registry; the
backends attach their tables (`attach`), which take the emitters, each checked by its
backend. Nothing here imports a backend or a framework.

Plugins load lazily, on the first `load_all()`: discovering entry points reads every
installed distribution's metadata, which `archc` does once a process (pydantic has already
imported `importlib.metadata` by then). A plugin that fails to import, names an op that exists
already, or declares one inconsistently is a `SpecError` naming it (E180-E182): never a bug.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Diagnostic, SpecError
from .ops import REGISTRY, OpDef, RegistrationError

GROUP = "archc.ops"
E_IMPORT, E_NAME, E_DECLARED = "E180", "E181", "E182"


@dataclass(frozen=True)
class OpUnit:
    """One op as a plugin declares it: what the compiler knows (`op`), the Keras layer
    (`archc.backends.keras.ops.KerasLayer`) and the PyTorch emitter
    (`archc.backends.torch.ops.TorchOp`)."""

    op: OpDef
    keras: Any
    torch: Any


@dataclass(frozen=True)
class Plugin:
    """An installed plugin: its entry point, its distribution and the ops it adds."""

    name: str  # the entry point's name
    dist: str  # the distribution's name, as generated files record it
    version: str
    units: tuple[OpUnit, ...] = field(repr=False)

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(u.op.name for u in self.units)

    def __str__(self) -> str:
        return f"plugin '{self.name}' ({self.dist} {self.version})"


# A backend's table of emitters: (the table, the type its entries have, a check of one entry
# that raises RegistrationError). Backends attach theirs when they load (backends/keras/ops.py,
# backends/torch/ops.py).
Check = Callable[[str, Any], None]
_TABLES: dict[str, tuple[dict[str, Any], type, Check]] = {}
PLUGINS: dict[str, Plugin] = {}  # by entry point name, in load order
OWNERS: dict[str, Plugin] = {}  # op name -> the plugin that adds it
_state: dict[str, Any] = {"loaded": False, "error": None}


def attach(part: str, table: dict[str, Any], kind: type, check: Check) -> None:
    """A backend's emitter table (`part`: the OpUnit field it takes): the loaded plugins'
    entries now, and later plugins' as they load."""
    _TABLES[part] = (table, kind, check)
    for plugin in PLUGINS.values():
        for unit in plugin.units:
            table[unit.op.name] = getattr(unit, part)


def plugin_of(op: str) -> Plugin | None:
    """The plugin that adds an op (None: one of archc's own)."""
    return OWNERS.get(op)


def builtin(op: str) -> bool:
    return op not in OWNERS


def builtin_ops() -> dict[str, OpDef]:
    """archc's own ops (what its own tests cover op by op); plugins test theirs."""
    from .ops import load_all

    return {name: op for name, op in load_all().items() if name not in OWNERS}


def used_by(ops: Sequence[str]) -> dict[str, str]:
    """{distribution: version} of the plugins whose ops `ops` names, by name."""
    found = {p.dist: p.version for op in ops if (p := OWNERS.get(op)) is not None}
    return dict(sorted(found.items()))


def load_plugins() -> dict[str, Plugin]:
    """Load the installed plugins once a process (again after `reset`). A broken plugin is a
    SpecError, every time this is called; nothing of it is registered."""
    if _state["error"] is not None:
        raise _state["error"]
    if _state["loaded"]:
        return PLUGINS
    _state["loaded"] = True
    from importlib.metadata import entry_points

    try:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            _load(ep)
    except SpecError as exc:
        _state["error"] = exc
        raise
    return PLUGINS


def reset() -> None:
    """Forget every plugin (their ops leave the registries): the next `load_all()` discovers
    them again. For tests that install a plugin for a while."""
    for op in OWNERS:
        REGISTRY.pop(op, None)
        for table, _, _ in _TABLES.values():
            table.pop(op, None)
    OWNERS.clear()
    PLUGINS.clear()
    _state.update(loaded=False, error=None)


def _fail(code: str, what: str, message: str, hint: str) -> SpecError:
    return SpecError([Diagnostic(code, f"{what}: {message}", hint=hint)])


def _load(ep: Any) -> None:
    dist = getattr(ep, "dist", None)
    plugin = Plugin(
        ep.name,
        getattr(dist, "name", None) or ep.name,
        getattr(dist, "version", None) or "unknown",
        (),
    )
    try:
        declared = ep.load()
        units = declared() if callable(declared) else declared
        units = tuple(units)
    except Exception as exc:
        raise _fail(
            E_IMPORT,
            str(plugin),
            f"loading entry point '{ep.value}' failed: {type(exc).__name__}: {exc}",
            "fix or uninstall the plugin (pip uninstall " + plugin.dist + ")",
        ) from exc
    plugin = dataclasses.replace(plugin, units=units)
    names: set[str] = set()
    for unit in units:
        if not isinstance(unit, OpUnit):
            raise _fail(
                E_DECLARED,
                str(plugin),
                f"declares {type(unit).__name__} {unit!r:.60}, not an OpUnit",
                f"entry point '{ep.value}' must name a sequence of archc.compiler.plugins.OpUnit",
            )
        name = getattr(unit.op, "name", None)
        try:
            _check_unit(unit)
        except RegistrationError as exc:
            raise _fail(E_DECLARED, f"{plugin}, op '{name}'", str(exc), _HINT) from exc
        assert isinstance(name, str)
        if name in REGISTRY or name in names:
            other = OWNERS.get(name)
            whose = f"{other}'s" if other else "archc's own" if name in REGISTRY else "its own"
            raise _fail(
                E_NAME,
                str(plugin),
                f"op '{name}' is already {whose} op of that name",
                "a plugin's op needs a name of its own (prefix it with the plugin's name)",
            )
        names.add(name)
    for unit in units:  # everything checked: register the whole plugin
        REGISTRY[unit.op.name] = unit.op
        for part, (table, _, _) in _TABLES.items():
            table[unit.op.name] = getattr(unit, part)
        OWNERS[unit.op.name] = plugin
    PLUGINS[plugin.name] = plugin


_HINT = "see docs/PLUGINS.md for what an op declares"


def _check_unit(unit: OpUnit) -> None:
    """The declaration checks archc can make without running the op (RegistrationError)."""
    op = unit.op
    if not isinstance(op, OpDef):
        raise RegistrationError(f"op is a {type(op).__name__}, not a archc.compiler.ops.OpDef")
    if not isinstance(op.name, str) or not op.name.isidentifier() or not op.name.islower():
        raise RegistrationError(f"name {op.name!r} is not a lower-case identifier")
    if not isinstance(op.title, str) or not op.title.isidentifier():
        raise RegistrationError(f"title {op.title!r} is not a Keras class name")
    if not (isinstance(op.attrs, type) and dataclasses.is_dataclass(op.attrs)):
        raise RegistrationError(f"attrs {op.attrs!r} is not a dataclass")
    try:
        typing.get_type_hints(op.attrs, include_extras=True)
        op.adapter()  # pydantic builds a validator from the attribute types
    except Exception as exc:
        raise RegistrationError(f"attrs {op.attrs.__name__}'s types: {exc}") from exc
    for rule in ("infer", "weights", "flops", "macs"):
        if not callable(getattr(op, rule)):
            raise RegistrationError(f"{rule} is not callable")
    unknown = set(op.computed) - {f.name for f in dataclasses.fields(op.attrs)}
    if unknown:
        raise RegistrationError(f"computed names no attribute: {', '.join(sorted(unknown))}")
    for part in ("keras", "torch"):
        value = getattr(unit, part)
        if part not in _TABLES:  # the backend module was never imported: not its type
            raise RegistrationError(f"{part} is a {type(value).__name__}, not an emitter")
        _, kind, check = _TABLES[part]
        if not isinstance(value, kind):
            raise RegistrationError(f"{part} is a {type(value).__name__}, not a {kind.__name__}")
        check(op.name, value)
