"""References by name during expansion: scopes (what `prev`, `input` and ids mean where an
item is expanded) and resolving a reference to the node it names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Location, did_you_mean, short_repr
from .schema import RESERVED_REFS
from .template import is_template
from .yaml_loader import PathKey


@dataclass
class Scope:
    """Where an item is expanded: its environment, input, previous node, path and ids."""

    env: dict[str, Any]
    input: str | None
    prev: str | None
    path: tuple[str, ...]
    ids: dict[str, str] = field(default_factory=dict)
    blocks: tuple[str, ...] = ()


class References:
    """Reference resolution for the expander (which provides the attributes used here)."""

    defined: dict[str, Location]
    broken: set[str]

    def error(
        self,
        code: str,
        message: str,
        where: PathKey | Location | None,
        scope: Scope | None,
        hint: str = "",
        key: bool = False,
        related: tuple[tuple[str, Location], ...] = (),
    ) -> None:
        raise NotImplementedError

    def render(
        self, value: Any, env: dict[str, Any], where: PathKey, scope: Scope, what: str
    ) -> tuple[bool, Any]:
        raise NotImplementedError

    def ref(self, raw: Any, where: PathKey, scope: Scope) -> str | None:
        ok, name = self.render(raw, scope.env, where, scope, "reference")
        if not ok:
            return None
        return self.resolve(name, where, scope)

    def resolve(self, name: Any, where: PathKey, scope: Scope) -> str | None:
        """The node a reference names ('prev', 'input', an id or a layer name)."""
        if not isinstance(name, str):
            self.error(
                "E053",
                f"a reference must be a layer name, got {short_repr(name)}",
                where,
                scope,
                hint="one name per reference; an expression may give a list of names "
                "for all the inputs: inputs: \"${['a', 'b']}\"",
            )
            return None
        if name == "prev":
            if scope.prev is None:
                self.error("E050", "'prev' has no previous layer here", where, scope)
            return scope.prev
        if name == "input":
            if scope.input is None:
                self.error("E050", "'input' has no input here", where, scope)
            return scope.input
        if name in scope.ids:
            return scope.ids[name]
        if name in self.defined or name in self.broken:
            return str(name)
        known = [
            *self.defined,
            *scope.ids,
            *RESERVED_REFS,
            *(b for b in self.broken if "<" not in b),
        ]
        self.error(
            "E051",
            f"undefined layer '{name}'",
            where,
            scope,
            hint=did_you_mean(str(name), known)
            or "a reference names an earlier layer, a local id, 'prev' or 'input'",
        )
        return None

    def refs(self, item: Any, where: PathKey, scope: Scope) -> tuple[str, ...] | None:
        if item.inputs is None:
            if scope.prev is None:
                self.error("E050", "this layer has no input", where, scope)
                return None
            return (scope.prev,)
        if isinstance(item.inputs, str) and is_template(item.inputs):
            where = (*where, "inputs")
            ok, names = self.render(item.inputs, scope.env, where, scope, "inputs")
            if not ok:
                return None
            if isinstance(names, list):  # an expression giving every input's name
                found = [self.resolve(n, where, scope) for n in names]
                return None if any(f is None for f in found) else tuple(f for f in found if f)
            found_one = self.resolve(names, where, scope)
            return None if found_one is None else (found_one,)
        raw = [item.inputs] if isinstance(item.inputs, str) else item.inputs
        paths = (
            [(*where, "inputs")]
            if isinstance(item.inputs, str)
            else [(*where, "inputs", i) for i in range(len(raw))]
        )
        out = [self.ref(r, p, scope) for r, p in zip(raw, paths, strict=True)]
        return None if any(o is None for o in out) else tuple(o for o in out if o)
