"""Structure recovery for `archc import keras`: repeated subgraphs as blocks called in repeats.

An imported model is a flat list of layers. Keras applications (and most hand-written models)
name the layers of one block with a shared prefix that counts: `conv2_block1_1_conv`,
`block2a_expand_conv`, `block_3_project`. This module reads those prefixes back:

1. *Units*: the contiguous layers sharing a prefix that ends after the k-th number of their
   names (k = 1, 2, 3 are tried; `2a` is two numbers, the letter counting from `a`), with one
   input from outside and one output read outside (its last layer).
2. *Runs*: consecutive units with the same prefix pattern, each reading the one before it,
   whose numbers count up (one loop, or two nested: stage and block).
3. *Blocks*: the units of a pattern unified by layer suffix (structural hashing: the same op
   for a suffix in every unit, the same wiring): a suffix some units lack gets a `when` flag,
   an attribute that differs becomes an argument, and an input that differs a conditional
   reference on a flag.
4. *Calls*: each argument as an expression of the loop variables: a constant, a per-stage
   list (integer lists become parameters: the widths, kernels, strides a user changes), the
   first block of a stage against the others, a rate growing with the block's index, or the
   table itself.

The caller renders the result and keeps it only if it expands to the flat import's graph
exactly (names, ops, attributes, inputs, shapes) and the backends can generate it; otherwise
the next candidate or the flat form is written. Nothing here imports a framework.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"\d+")
MAX_DEPTH = 3


@dataclass(frozen=True)
class Key:
    prefix: str  # "conv2_block1_"
    values: tuple[int, ...]  # (2, 1); a letter counts from a = 0
    kinds: tuple[str, ...]  # "n" (a number) or "a" (a letter)
    skeleton: str  # "conv{}_block{}_"


def key_of(name: str, depth: int) -> Key | None:
    """The prefix of `name` through its depth-th number (a letter right after a number and
    before `_` is a number of its own), if `_` follows it and a suffix remains."""
    tokens: list[tuple[int, int, int, str]] = []  # (start, end, value, kind)
    for m in _TOKEN.finditer(name):
        tokens.append((m.start(), m.end(), int(m.group()), "n"))
        end = m.end()
        if end + 1 < len(name) and name[end].islower() and name[end + 1] == "_":
            tokens.append((end, end + 1, ord(name[end]) - 97, "a"))
    if len(tokens) < depth:
        return None
    end = tokens[depth - 1][1]
    if end >= len(name) - 1 or name[end] != "_":
        return None
    prefix = name[: end + 1]
    skeleton, pos = "", 0
    for start, stop, _, _ in tokens[:depth]:
        skeleton += prefix[pos:start].replace("{", "{{").replace("}", "}}") + "{}"
        pos = stop
    skeleton += prefix[pos:].replace("{", "{{").replace("}", "}}")
    return Key(
        prefix,
        tuple(t[2] for t in tokens[:depth]),
        tuple(t[3] for t in tokens[:depth]),
        skeleton,
    )


@dataclass
class Unit:
    key: Key
    start: int  # index of its first item in the flat list
    items: list[Any]  # importer.Item
    external: str  # the one tensor it reads from outside

    @property
    def end(self) -> int:
        return self.start + len(self.items)

    @property
    def output(self) -> str:
        return str(self.items[-1].name)

    def suffix(self, name: str) -> str:
        return name[len(self.key.prefix) :]


@dataclass
class Run:
    units: list[Unit]
    varying: list[int]  # token positions that count (1 or 2: outer first)
    block: Block | None = None


@dataclass
class Arg:
    name: str
    type: str
    values: list[Any]  # per instance of the block (None: the layer is absent there)
    flat2: bool = False  # a ((a, b), (c, d)) value passed flat as [a, b, c, d]


@dataclass
class Slot:
    """One layer of a block's body."""

    suffix: str
    op: str
    trainable: bool
    present: list[bool]  # per instance
    attrs: list[dict[str, Any] | None]  # per instance: the layer's attributes
    refs: list[list[str] | None]  # per instance: 'input' or a suffix, per input
    id: str | None = None
    when: str | None = None  # a flag argument's name, or "not flag"
    inputs: list[str] | None = None  # as written: None (prev) or references
    exprs: dict[str, str] = field(default_factory=dict)  # attribute -> expression


@dataclass
class Block:
    name: str
    slots: list[Slot]
    instances: list[Unit]
    args: list[Arg] = field(default_factory=list)


# -- units and runs ---------------------------------------------------------------------------


def find_units(items: Sequence[Any], first_input: str, depth: int) -> list[Unit]:
    """The units at `depth`: contiguous layers sharing a key, at least two of them, reading
    one tensor from outside, their other layers read only inside."""
    keys = [key_of(item.name, depth) for item in items]
    segments: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or keys[i] != keys[start]:
            segments.append((start, i))
            start = i
    seen: dict[str, int] = {}
    for a, _ in segments:
        k = keys[a]
        if k is not None:
            seen[k.prefix] = seen.get(k.prefix, 0) + 1
    readers: dict[str, set[int]] = {}
    for idx, item in enumerate(items):
        for name in item.inputs:
            readers.setdefault(name, set()).add(idx)
    units = []
    for a, b in segments:
        k = keys[a]
        if k is None or seen[k.prefix] > 1 or b - a < 2:
            continue
        inside = {items[j].name for j in range(a, b)}
        external = {n for j in range(a, b) for n in items[j].inputs if n not in inside}
        if len(external) != 1:
            continue
        # only the last layer is read after the unit
        if any(readers.get(items[j].name, set()) - set(range(a, b)) for j in range(a, b - 1)):
            continue
        units.append(Unit(k, a, list(items[a:b]), next(iter(external))))
    return units


def find_runs(items: Sequence[Any], units: list[Unit], first_input: str) -> list[Run]:
    """Consecutive units with one pattern, each reading the one before (the first reading the
    layer before it), whose counting numbers form one loop or two nested ones."""
    runs: list[Run] = []
    current: list[Unit] = []

    def close() -> None:
        if len(current) >= 2:
            runs.extend(_split_loops(list(current)))
        current.clear()

    for unit in units:
        before = items[unit.start - 1].name if unit.start > 0 else first_input
        if (
            current
            and current[-1].end == unit.start
            and current[-1].key.skeleton == unit.key.skeleton
            and unit.external == current[-1].output
        ):
            current.append(unit)
            continue
        close()
        if unit.external == before:
            current.append(unit)
    close()
    return runs


def _split_loops(units: list[Unit]) -> list[Run]:
    """Split a same-pattern sequence where its numbers stop counting as one or two loops."""
    out: list[Run] = []
    rest = units
    while len(rest) >= 2:
        n, varying = _loop_prefix(rest)
        if n >= 2:
            out.append(Run(rest[:n], varying))
            rest = rest[n:]
        else:
            rest = rest[1:]
    return out


def _loop_prefix(units: list[Unit]) -> tuple[int, list[int]]:
    """How many units from the first count as loops, and the counting positions."""
    width = len(units[0].key.values)
    best = (1, [width - 1])
    for varying in ([p] for p in range(width)):
        n = _count_one(units, varying[0])
        if n > best[0]:
            best = (n, varying)
    for outer in range(width):
        for inner in range(outer + 1, width):
            n = _count_two(units, outer, inner)
            if n > best[0] and n > _count_one(units, inner):
                best = (n, [outer, inner])
    return best


def _fixed(a: Key, b: Key, free: Sequence[int]) -> bool:
    return all(a.values[p] == b.values[p] for p in range(len(a.values)) if p not in free)


def _count_one(units: list[Unit], p: int) -> int:
    n = 1
    while (
        n < len(units)
        and _fixed(units[0].key, units[n].key, [p])
        and units[n].key.values[p] == units[n - 1].key.values[p] + 1
    ):
        n += 1
    return n


def _count_two(units: list[Unit], outer: int, inner: int) -> int:
    start = units[0].key.values[inner]
    n = 1
    while n < len(units):
        a, b = units[n - 1].key, units[n].key
        if not _fixed(units[0].key, b, [outer, inner]):
            break
        same = b.values[outer] == a.values[outer] and b.values[inner] == a.values[inner] + 1
        step = b.values[outer] == a.values[outer] + 1 and b.values[inner] == start
        if not (same or step):
            break
        n += 1
    # end at a stage's end only where more than one stage is covered
    if len({u.key.values[outer] for u in units[:n]}) < 2:
        return 1
    return n


# -- blocks ------------------------------------------------------------------------------------


class Mismatch(Exception):
    """Units that cannot share one block."""


def _merge_order(order: list[str], seq: list[str]) -> list[str]:
    """The shortest sequence holding both in their orders (by longest common subsequence)."""
    n, m = len(order), len(seq)
    lcs = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            lcs[i][j] = (
                lcs[i + 1][j + 1] + 1 if order[i] == seq[j] else max(lcs[i + 1][j], lcs[i][j + 1])
            )
    out, i, j = [], 0, 0
    while i < n and j < m:
        if order[i] == seq[j]:
            out.append(order[i])
            i, j = i + 1, j + 1
        elif lcs[i + 1][j] >= lcs[i][j + 1]:
            out.append(order[i])
            i += 1
        else:
            out.append(seq[j])
            j += 1
    return out + order[i:] + seq[j:]


def unify(name: str, units: list[Unit]) -> Block:
    """One block for the units (Mismatch where a suffix has two ops, the wiring leaves the
    unit, or the units end at different layers)."""
    order: list[str] = []
    for unit in units:
        seq = [unit.suffix(item.name) for item in unit.items]
        if len(set(seq)) != len(seq):
            raise Mismatch("a suffix twice")
        order = _merge_order(order, seq)
    slots: dict[str, Slot] = {}
    for s in order:
        slots[s] = Slot(s, "", True, [], [], [])
    for unit in units:
        here = {unit.suffix(item.name): item for item in unit.items}
        for s, slot in slots.items():
            item = here.get(s)
            slot.present.append(item is not None)
            if item is None:
                slot.attrs.append(None)
                slot.refs.append(None)
                continue
            if slot.op and (slot.op != item.op or slot.trainable != item.trainable):
                raise Mismatch(f"{s}: two ops")
            slot.op, slot.trainable = item.op, item.trainable
            slot.attrs.append(dict(item.attrs))
            refs = []
            for src in item.inputs:
                if src == unit.external:
                    refs.append("input")
                elif src.startswith(unit.key.prefix) and unit.suffix(src) in here:
                    refs.append(unit.suffix(src))
                else:
                    raise Mismatch("reads outside the unit")
            slot.refs.append(refs)
    for order_ in (_chained(list(slots.values())), list(slots.values())):
        if _ends_last(order_, units):
            return Block(name, order_, units)
    raise Mismatch("a unit's output is not its last layer")


def _ends_last(slots: list[Slot], units: list[Unit]) -> bool:
    """Each unit's output is the last of its layers in this order (a block's output is the
    last layer it makes)."""
    for j, unit in enumerate(units):
        present = [s.suffix for s in slots if s.present[j]]
        if present[-1] != unit.suffix(unit.output):
            return False
    return True


def _chained(slots: list[Slot]) -> list[Slot]:
    """The slots in an order where each follows what it reads, preferring the one that
    reads the slot just placed (so that `prev` reaches it), else the earliest."""
    deps = {s.suffix: {r for refs in s.refs if refs for r in refs if r != "input"} for s in slots}
    out: list[Slot] = []
    placed: set[str] = set()
    rest = list(slots)
    while rest:
        ready = [s for s in rest if deps[s.suffix] <= placed]
        if not ready:
            return slots
        last = out[-1].suffix if out else "input"
        chosen = next(
            (s for s in ready if any(refs and refs[0] == last for refs in s.refs)), ready[0]
        )
        out.append(chosen)
        placed.add(chosen.suffix)
        rest.remove(chosen)
    return out


def block_name(skeleton: str, taken: set[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z]+", skeleton.replace("{}", " ")) if w]
    base = "_".join(w.lower() for w in words) or "block"
    if not re.match(r"[a-z]", base):
        base = "block_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _ident(text: str, lead: str = "l") -> str:
    """An identifier from a suffix ("0_bn" -> "l0_bn"; with lead "" where one is prefixed)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_").lower()
    if not out or not out[0].isalpha():
        out = lead + out
    return out


# -- arguments ---------------------------------------------------------------------------------


def _arg_type(values: list[Any]) -> tuple[str, bool] | None:
    """The argument type of the present values (None where archc has none), and whether a
    2x2 nested list travels flat."""
    vs = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in vs):
        return "bool", False
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vs):
        return "int", False
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vs):
        return "float", False
    if all(isinstance(v, str) for v in vs):
        return "str", False
    if all(isinstance(v, list) for v in vs):
        if all(all(isinstance(x, int) and not isinstance(x, bool) for x in v) for v in vs):
            return "list[int]", False
        if all(all(isinstance(x, int | float) and not isinstance(x, bool) for x in v) for v in vs):
            return "list[float]", False
        if all(
            len(v) == 2
            and all(isinstance(x, list) and len(x) == 2 for x in v)
            and all(isinstance(y, int) and not isinstance(y, bool) for x in v for y in x)
            for v in vs
        ):
            return "list[int]", True
    return None


def _agree(a: list[Any], b: list[Any]) -> bool:
    return all(x == y for x, y in zip(a, b, strict=True) if x is not None and y is not None)


def _ratio(base: list[Any], other: list[Any]) -> int | None:
    """k where other == k * base at every instance both have (integers, k >= 2)."""
    k = None
    for x, y in zip(base, other, strict=True):
        if x is None or y is None:
            continue
        if not isinstance(x, int) or isinstance(x, bool) or not isinstance(y, int) or x == 0:
            return None
        if y % x:
            return None
        if k is None:
            k = y // x
        elif y // x != k:
            return None
    return k if k is not None and k >= 2 else None


def arguments(
    block: Block, attr_value: Callable[[Any], Any], shapes: dict[str, Any] | None = None
) -> None:
    """Fill the block's arguments, each slot's `when`, inputs and attribute expressions.
    `attr_value(v)` gives an attribute value as the spec writes it; `shapes` (layer name ->
    its output shape, channels last) lets widths follow the block's input (`in_shape[-1] *
    k`) and a reshape's the channels it reads (`prev_shape[-1]`)."""
    n = len(block.instances)
    args: list[Arg] = []
    names: set[str] = {"prefix"}

    def new_arg(base: str, type_: str, values: list[Any], flat2: bool = False) -> Arg:
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        arg = Arg(name, type_, values, flat2)
        args.append(arg)
        return arg

    # flags: the slots some instances lack
    flags: list[Arg] = []

    def flag_for(vector: list[bool], base: str) -> str:
        for f in flags:
            if f.values == vector:
                return f.name
            if f.values == [not v for v in vector]:
                return f"not {f.name}"
        f = new_arg(base, "bool", list(vector))
        flags.append(f)
        return f.name

    for slot in block.slots:
        if not all(slot.present):
            slot.when = flag_for(slot.present, "with_" + _ident(slot.suffix, ""))
    # inputs: prev where each instance's input is the layer before it there
    prevs: list[str] = ["input"] * n
    for slot in block.slots:
        written: list[str] = []
        simple = True
        for j in range(n):
            refs = slot.refs[j]
            if refs is not None and refs != [prevs[j]]:
                simple = False
        if not simple:
            width = {len(r) for r in slot.refs if r is not None}
            if len(width) != 1:
                raise Mismatch("inputs of different lengths")
            for pos in range(width.pop()):
                raw = [None if r is None else r[pos] for r in slot.refs]
                if all(r is None or r == prevs[j] for j, r in enumerate(raw)):
                    written.append("prev")
                    continue
                known = {p for p in raw if p is not None}
                if len(known) == 1:
                    written.append(known.pop())
                elif len(known) == 2:
                    a, b = sorted(known)
                    present = [j for j, p in enumerate(raw) if p is not None]
                    full = [raw[j] == a for j in range(n)]
                    # a flag equal where the slot is present
                    flag = _find_flag(flags, full, present)
                    if flag is None:
                        flag = flag_for(full, "with_" + _ident(a, ""))
                    if flag.startswith("not "):
                        flag, a, b = flag[4:], b, a
                    written.append(f"${{{_quote(a)} if {flag} else {_quote(b)}}}")
                else:
                    raise Mismatch("an input from three places")
            slot.inputs = written
        for j in range(n):
            if slot.present[j]:
                prevs[j] = slot.suffix
    # ids for the slots referenced by name
    used = {r for s in block.slots for r in (s.inputs or [])}
    for slot in block.slots:
        ident = _ident(slot.suffix)
        if any(_quote(slot.suffix) in r for r in used if r.startswith("${")) or (
            slot.suffix in used
        ):
            slot.id = ident
    for slot in block.slots:
        if slot.inputs:
            slot.inputs = [_as_id(r, block) for r in slot.inputs]
    # attributes that differ
    pending: list[tuple[Slot, str, list[Any]]] = []
    plain: dict[str, str] = {}  # argument -> the attribute it was made for
    for slot in block.slots:
        keys: list[str] = []
        for attrs in slot.attrs:
            for key in attrs or {}:
                if key not in keys:
                    keys.append(key)
        for key in keys:
            values: list[Any] = [None if a is None else attr_value(a.get(key)) for a in slot.attrs]
            present = [v for v, p in zip(values, slot.present, strict=True) if p]
            if all(v == present[0] for v in present):
                continue
            if any(v is None for v in present):
                raise Mismatch(f"{slot.suffix}.{key}: null in some instances")
            pending.append((slot, key, values))
    for slot, key, values in pending:
        template = "{}"
        expr = _merged(args, flags, values)
        if expr is None:
            relative = _relative(block, slot, key, values, shapes)
            if relative is not None:
                values, template = relative
                if not any(v is not None for v in values):
                    slot.exprs[key] = "${" + template.format("") + "}"
                    continue
                expr = _merged(args, flags, values)
        typed = _arg_type(values)
        if typed is None:
            values = _pads(values)  # 1, [1, 2] and [[0, 1], [0, 1]] for one zero pad
            typed = _arg_type(values)
        if typed is None:
            raise Mismatch(f"{slot.suffix}.{key}: no argument type")
        type_, flat2 = typed
        if flat2:
            values = [None if v is None else [x for pair in v for x in pair] for v in values]
            expr = None
        if expr is None:
            base = key if key not in ("fn",) else "activation"
            if template != "{}":
                base = "expansion"  # the width over the block's input channels
            arg = new_arg(f"{_ident(slot.suffix)}_{base}", type_, values, flat2)
            plain[arg.name] = base
            expr = arg.name
        if flat2:
            expr = f"[[{expr}[0], {expr}[1]], [{expr}[2], {expr}[3]]]"
        slot.exprs[key] = "${" + template.format(expr) + "}"
    # an attribute's own name where one argument has it ("filters"), else the layer's too
    bases = [plain[a.name] for a in args if a.name in plain]
    for arg in args:
        own = plain.get(arg.name)
        if own is None or bases.count(own) > 1 or own in names:
            continue
        old, arg.name = arg.name, own
        names.add(own)
        for slot in block.slots:
            slot.exprs = {
                k: re.sub(rf"\b{re.escape(old)}\b", own, v) for k, v in slot.exprs.items()
            }
    block.args = args


def _pads(values: list[Any]) -> list[Any]:
    """Padding values written n, [h, w] or [[top, bottom], [left, right]] all as the pairs."""

    def pairs(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return [[v, v], [v, v]]
        if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
            return [[v[0], v[0]], [v[1], v[1]]]
        return v

    return [None if v is None else pairs(v) for v in values]


def _merged(args: list[Arg], flags: list[Arg], values: list[Any]) -> str | None:
    """An argument the values are (where both are given), or an integer multiple of; the
    argument takes the values where it had none."""
    typed = _arg_type(values)
    if typed is None or typed[1]:
        return None
    for arg in args:
        if arg.type != typed[0] or arg.flat2 or arg in flags:
            continue
        if _agree(arg.values, values):
            arg.values = [
                a if a is not None else v for a, v in zip(arg.values, values, strict=True)
            ]
            return arg.name
        if typed[0] == "int":
            k = _ratio(arg.values, values)
            if k is not None:
                return f"{k} * {arg.name}"
    return None


def _relative(
    block: Block, slot: Slot, key: str, values: list[Any], shapes: dict[str, Any] | None
) -> tuple[list[Any], str] | None:
    """A width as a multiple of the block's input channels, `in_shape[-1] * k` (the values
    left: k per instance, or none where k is one number), where that leaves fewer distinct
    values; a reshape's target whose last entry is the channels it reads, `prev_shape[-1]`.
    The template's {} is where the argument goes."""
    if shapes is None:
        return None
    if key in ("filters", "units") and all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values
    ):
        chans = []
        for unit in block.instances:
            shape = shapes.get(unit.external)
            chans.append(shape[-1] if shape and isinstance(shape[-1], int) else None)
        ratios: list[Any] = []
        for v, c in zip(values, chans, strict=True):
            if v is None:
                ratios.append(None)
            elif not c or v % c:
                return None
            else:
                ratios.append(v // c)
        distinct = {r for r in ratios if r is not None}
        if len(distinct) >= len({v for v in values if v is not None}):
            return None
        if len(distinct) == 1:
            k = distinct.pop()
            return [None] * len(values), "in_shape[-1]" + ("" if k == 1 else f" * {k}")
        return ratios, "in_shape[-1] * {}"
    if slot.op == "reshape" and key == "target_shape" and slot.inputs is None:
        lasts, rests = [], []
        for j, unit in enumerate(block.instances):
            v = values[j]
            if v is None:
                continue
            item = next(i for i in unit.items if i.name == unit.key.prefix + slot.suffix)
            shape = shapes.get(item.inputs[0])
            if not isinstance(v, list) or not shape or v[-1] != shape[-1]:
                return None
            lasts.append(v[-1])
            rests.append(v[:-1])
        if rests and all(r == rests[0] for r in rests):
            head = "".join(f"{x}, " for x in rests[0])
            return [None] * len(values), f"[{head}prev_shape[-1]]"
    return None


def _find_flag(flags: list[Arg], full: list[bool], present: list[int]) -> str | None:
    for f in flags:
        if all(f.values[j] == full[j] for j in present):
            return f.name
        if all(f.values[j] != full[j] for j in present):
            return f"not {f.name}"
    return None


def _quote(ref: str) -> str:
    return "'" + ref + "'"


def _as_id(ref: str, block: Block) -> str:
    ids = {s.suffix: s.id for s in block.slots if s.id}
    if ref.startswith("${"):
        for suffix, ident in ids.items():
            ref = ref.replace(_quote(suffix), _quote(ident))  # type: ignore[arg-type]
        return ref
    return ids.get(ref, ref) or ref


# -- call-site expressions ---------------------------------------------------------------------


def py(value: Any) -> str:
    """A value in the expression language (YAML's true/false, Python's strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    return str(value)


@dataclass
class Loops:
    """A run's instances as loop indices: (outer, inner) or (inner,)."""

    outer: list[int] | None  # the outer values, in order (None: one loop)
    counts: list[int]  # inner iterations per outer value
    start: int  # the inner loop's first value
    index: list[tuple[int, int]]  # per instance: (outer position, inner value)


def loops_of(run: Run) -> Loops:
    if len(run.varying) == 1:
        p = run.varying[0]
        vals = [u.key.values[p] for u in run.units]
        return Loops(None, [len(vals)], vals[0], [(0, v) for v in vals])
    o, i = run.varying
    outer: list[int] = []
    counts: list[int] = []
    index = []
    for u in run.units:
        ov = u.key.values[o]
        if not outer or outer[-1] != ov:
            outer.append(ov)
            counts.append(0)
        counts[-1] += 1
        index.append((len(outer) - 1, u.key.values[i]))
    return Loops(outer, counts, run.units[0].key.values[i], index)


@dataclass
class Synth:
    """Turns a table of values (per instance; None: any) into an expression."""

    loops: Loops
    outer_var: str
    inner_var: str
    params: dict[str, dict[str, Any]]
    param_base: str

    def stage_index(self) -> str:
        assert self.loops.outer is not None
        o0 = self.loops.outer[0]
        return self.outer_var if o0 == 0 else f"{self.outer_var} - {o0}"

    def inner_index(self) -> str:
        s = self.loops.start
        return self.inner_var if s == 0 else f"{self.inner_var} - {s}"

    def per_stage(self, values: list[Any]) -> list[Any] | None:
        assert self.loops.outer is not None
        table: list[Any] = [None] * len(self.loops.outer)
        for (o, _), v in zip(self.loops.index, values, strict=True):
            if v is None:
                continue
            if table[o] is not None and table[o] != v:
                return None
            table[o] = v
        return table

    def expression(self, name: str, type_: str, values: list[Any]) -> Any:
        known = [v for v in values if v is not None]
        if not known:
            return _fill([], type_)
        if all(v == known[0] for v in known):
            return known[0]
        first = self.loops.start
        is_first = [i == first for _, i in self.loops.index]
        if self.loops.outer is not None:
            stage = self.per_stage(values)
            if stage is not None:
                return "${" + self.stage_list(name, type_, stage) + "}"
        f = [v if a else None for v, a in zip(values, is_first, strict=True)]
        r = [None if a else v for v, a in zip(values, is_first, strict=True)]
        fe = self.part(name + "_first", type_, f)
        re_ = self.part(name, type_, r)
        if fe is not None and re_ is not None:
            cond = f"{self.inner_var} == {first}"
            if type_ == "bool" and fe in ("true", "false") and re_ in ("true", "false"):
                return "${" + (cond if fe == "true" else f"{self.inner_var} != {first}") + "}"
            return "${" + f"{fe} if {cond} else {re_}" + "}"
        rate = self.growing(values)
        if rate is not None:
            return "${" + rate + "}"
        if self.loops.outer is None:
            return "${" + f"{py(_filled(values, type_))}[{self.inner_index()}]" + "}"
        rows: list[list[Any]] = [[] for _ in self.loops.outer]
        for (o, _), v in zip(self.loops.index, values, strict=True):
            rows[o].append(v)
        table = [_filled(row, type_) for row in rows]
        return "${" + f"{py(table)}[{self.stage_index()}][{self.inner_index()}]" + "}"

    def part(self, name: str, type_: str, values: list[Any]) -> str | None:
        known = [v for v in values if v is not None]
        if not known:
            return py(_fill([], type_))
        if all(v == known[0] for v in known):
            return py(known[0])
        if self.loops.outer is None:
            return None
        stage = self.per_stage(values)
        if stage is None:
            return None
        return self.stage_list(name, type_, stage)

    def add_param(self, base: str, values: list[int], doc: str) -> str:
        pname, k = base, 2
        while pname in self.params and self.params[pname]["default"] != values:
            pname, k = f"{base}_{k}", k + 1
        self.params[pname] = {"type": "list[int]", "default": values, "doc": doc}
        return pname

    def stage_list(self, name: str, type_: str, stage: list[Any]) -> str:
        values = _filled(stage, type_)
        if type_ == "int":
            doc = "per stage" if not name.endswith("_first") else "per stage, its first block"
            pname = self.add_param(f"{self.param_base}{name}", values, doc)
            return f"{pname}[{self.stage_index()}]"
        if type_ == "bool":
            o0 = self.loops.outer[0] if self.loops.outer else 0
            trues = [o0 + k for k, v in enumerate(values) if v]
            falses = [o0 + k for k, v in enumerate(values) if not v]
            var = self.outer_var
            if len(falses) == 1:
                return f"{var} != {falses[0]}"
            if len(trues) == 1:
                return f"{var} == {trues[0]}"
        return f"{py(values)}[{self.stage_index()}]"

    def growing(self, values: list[Any]) -> str | None:
        """rate * b / n, b the instance's index over the run, n their number (EfficientNet's
        drop-connect rate), where that gives every value exactly."""
        n = len(values)
        known = [(b, v) for b, v in enumerate(values) if v is not None]
        if not all(isinstance(v, float) for _, v in known) or len(known) < 2:
            return None
        b1, v1 = next((b, v) for b, v in known if b > 0)
        for rate in sorted({round(v1 * n / b1, 12), v1 * n / b1}):
            if all(rate * b / n == v for b, v in known):
                return f"{py(rate)} * ({self.counter()}) / {n}"
        return None

    def counter(self) -> str:
        """The instance's index over the run, from the loop variables."""
        if self.loops.outer is None:
            return self.inner_index()
        counts = self.counts_name()
        return f"sum({counts}[:{self.stage_index()}]) + {self.inner_index()}"

    def counts_name(self) -> str:
        return self.add_param(f"{self.param_base}blocks", self.loops.counts, "blocks per stage")


def _fill(values: list[Any], type_: str) -> Any:
    return {"bool": False, "int": 0, "float": 0.0, "str": ""}.get(type_, [])


def _filled(values: list[Any], type_: str) -> list[Any]:
    """None entries (no such layer there) take a neighbour's value, so lists read plainly."""
    known = [v for v in values if v is not None]
    if not known:
        return [_fill([], type_)] * len(values)
    out = list(values)
    last = known[0]
    for k, v in enumerate(out):
        if v is None:
            out[k] = last
        else:
            last = v
    return out


# -- the structured spec's text ---------------------------------------------------------------


@dataclass
class Recovered:
    params: dict[str, dict[str, Any]]  # parameters the calls read (per-stage lists)
    blocks: list[str]  # the lines under `blocks:`
    layers: list[str]  # the lines under `layers:`
    found: list[tuple[str, int]]  # (block, calls) in order of definition


Pairs = list[tuple[str, Any]]


def recover(
    items: Sequence[Any],
    first_input: str,
    depth: int,
    stated: Callable[[Any], dict[str, Any]],
    attr_value: Callable[[Any], Any],
    item_lines: Callable[[Any, str | None], list[str]],
    flow: Callable[[Any], str],
    max_line: int,
    shapes: dict[str, Any] | None = None,
) -> Recovered | None:
    """The items with the runs found at `depth` as blocks in repeats; None where none is
    found. `stated(item)` gives the attributes an item writes (the op's and the spec's
    defaults left out); `item_lines(item, prev)` an item's lines at the top level."""
    units = find_units(items, first_input, depth)
    runs = find_runs(items, units, first_input)
    if not runs:
        return None
    taken: set[str] = set()
    by_skeleton: dict[str, list[Run]] = {}
    for run in runs:
        by_skeleton.setdefault(run.units[0].key.skeleton, []).append(run)
    blocks: list[Block] = []
    for skeleton, group in by_skeleton.items():
        try:
            block = unify(block_name(skeleton, taken), [u for r in group for u in r.units])
            arguments(block, attr_value, shapes)
            blocks.append(block)
            for r in group:
                r.block = block
        except Mismatch:
            for r in group:
                try:
                    block = unify(block_name(skeleton, taken), r.units)
                    arguments(block, attr_value, shapes)
                    blocks.append(block)
                    r.block = block
                except Mismatch:
                    r.block = None
    runs = _referable([r for r in runs if r.block is not None], items)
    if not runs:
        return None
    params: dict[str, dict[str, Any]] = {}
    writer = _Writer(flow, max_line)
    layers: list[str] = []
    found: dict[str, int] = {}
    by_start = {r.units[0].start: r for r in runs}
    prev: str | None = first_input
    k = 0
    while k < len(items):
        at = by_start.get(k)
        if at is None:
            layers += item_lines(items[k], prev)
            prev = items[k].name
            k += 1
            continue
        run = at
        assert run.block is not None
        layers += _call_lines(run, run.block, params, writer)
        found[run.block.name] = found.get(run.block.name, 0) + len(run.units)
        k = run.units[-1].end
        prev = run.units[-1].output
    block_lines: list[str] = []
    for block in blocks:
        if block.name in found:
            block_lines += _block_lines(block, stated, writer)
    return Recovered(
        params, block_lines, layers, [(b.name, found[b.name]) for b in blocks if b.name in found]
    )


def _referable(runs: list[Run], items: Sequence[Any]) -> list[Run]:
    """The runs whose output is read only where code can reach it: as `prev` by the layer
    right after the run, or as the input of a run starting right after it (a layer made in
    a repeat has no name at the level around it)."""
    readers: dict[str, list[int]] = {}
    for idx, item in enumerate(items):
        for name in item.inputs:
            readers.setdefault(name, []).append(idx)
    while True:
        starts = {r.units[0].start: r for r in runs}
        bad = []
        for run in runs:
            end, out = run.units[-1].end, run.units[-1].output
            after = starts.get(end)
            ok = set(range(end, after.units[0].end)) if after else set()
            if after is None and end < len(items) and list(items[end].inputs) == [out]:
                ok = {end}
            if not set(readers.get(out, [])) <= ok:
                bad.append(run)
        if not bad:
            return runs
        runs = [r for r in runs if r not in bad]


class _Writer:
    def __init__(self, flow: Callable[[Any], str], max_line: int):
        self.flow, self.max_line = flow, max_line

    def item(self, pairs: Pairs, indent: str) -> list[str]:
        one = f"{indent}- {{" + ", ".join(f"{k}: {self.flow(v)}" for k, v in pairs) + "}"
        if len(one) <= self.max_line:
            return [one]
        out: list[str] = []
        for n, (key, value) in enumerate(pairs):
            lead = f"{indent}- " if n == 0 else f"{indent}  "
            out += self.value(lead, key, value, indent + "    ")
        return out

    def value(self, lead: str, key: str, value: Any, more: str) -> list[str]:
        line = f"{lead}{key}: {self.flow(value)}"
        if len(line) <= self.max_line or not isinstance(value, str):
            return [line]
        # a long expression: folded, broken at spaces
        words = value.split(" ")
        out = [f"{lead}{key}: >-"]
        current = more
        for w in words:
            if current.strip() and len(current) + 1 + len(w) > self.max_line:
                out.append(current)
                current = more + w
            else:
                current = current + (" " if current.strip() else "") + w
        out.append(current)
        return out


def _prefix_template(run: Run, loops: Loops, outer_var: str, inner_var: str) -> str:
    key = run.units[0].key
    parts: list[str] = []
    for p, (value, kind) in enumerate(zip(key.values, key.kinds, strict=True)):
        if p in run.varying:
            var = outer_var if len(run.varying) == 2 and p == run.varying[0] else inner_var
            parts.append(f"${{{var}}}" if kind == "n" else f"${{chr(97 + {var})}}")
        else:
            parts.append(str(value) if kind == "n" else chr(97 + value))
    return key.skeleton.format(*parts)


def _call_lines(
    run: Run, block: Block, params: dict[str, dict[str, Any]], writer: _Writer
) -> list[str]:
    loops = loops_of(run)
    outer_var, inner_var = "s", "i"
    synth = Synth(loops, outer_var, inner_var, params, "stage_")
    first = block.instances.index(run.units[0])
    span = range(first, first + len(run.units))
    args: Pairs = [("prefix", _prefix_template(run, loops, outer_var, inner_var))]
    for arg in block.args:
        values = [arg.values[j] for j in span]
        args.append((arg.name, synth.expression(arg.name, arg.type, values)))
    nested = loops.outer is not None
    call_lines = _call_item(
        block.name, args, _Writer(writer.flow, writer.max_line - (10 if nested else 6))
    )
    if loops.outer is None:
        head = [f"repeat: {len(run.units)}", f"var: {inner_var}", f"start: {loops.start}"]
        return _repeat(head, call_lines, "  ")
    counts = loops.counts
    if len(set(counts)) == 1:
        inner_count: Any = counts[0]
    else:
        inner_count = f"${{{synth.counts_name()}[{synth.stage_index()}]}}"
    inner = [
        f"repeat: {writer.flow(inner_count)}",
        "name: block",
        f"var: {inner_var}",
        f"start: {loops.start}",
    ]
    outer = [
        f"repeat: {len(loops.outer)}",
        "name: stage",
        f"var: {outer_var}",
        f"start: {loops.outer[0]}",
    ]
    return _repeat(outer, _repeat(inner, call_lines, ""), "  ")


def _repeat(head: list[str], body: list[str], indent: str) -> list[str]:
    out = [f"{indent}- {head[0]}"] + [f"{indent}  {h}" for h in head[1:]]
    out.append(f"{indent}  body:")
    return out + [f"{indent}    {line}" for line in body]


def _call_item(name: str, args: Pairs, writer: _Writer) -> list[str]:
    flat = (
        "- {block: "
        + name
        + ", args: {"
        + ", ".join(f"{k}: {writer.flow(v)}" for k, v in args)
        + "}}"
    )
    if len(flat) <= writer.max_line:
        return [flat]
    out = [f"- block: {name}", "  args:"]
    for key, value in args:
        out += writer.value("    ", key, value, "      ")
    return out


def _block_lines(
    block: Block, stated: Callable[[Any], dict[str, Any]], writer: _Writer
) -> list[str]:
    out = [f"  {block.name}:", "    args:", "      prefix: {type: str}"]
    for arg in block.args:
        out.append(f"      {arg.name}: {{type: {writer.flow(arg.type)}}}")
    out.append("    body:")
    for slot in block.slots:
        j = slot.present.index(True)
        item = block.instances[j].items[
            [i.name for i in block.instances[j].items].index(
                block.instances[j].key.prefix + slot.suffix
            )
        ]
        pairs: Pairs = [("op", slot.op), ("name", "${prefix}" + slot.suffix)]
        if slot.id:
            pairs.append(("id", slot.id))
        if slot.when:
            pairs.append(("when", "${" + slot.when + "}"))
        if slot.inputs is not None:
            pairs.append(("inputs", slot.inputs))
        shown = dict(stated(item))
        for key in item.attrs:
            if key in slot.exprs:
                shown[key] = slot.exprs[key]
        for key in slot.exprs:
            shown.setdefault(key, slot.exprs[key])
        order = list(dict.fromkeys([*item.attrs, *shown]))
        pairs += [(k, shown[k]) for k in order if k in shown]
        if not slot.trainable:
            pairs.append(("trainable", False))
        out += writer.item(pairs, "      ")
    return out
