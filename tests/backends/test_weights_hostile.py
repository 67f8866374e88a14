"""`archc weights` on hostile files: each is refused with a located E15x error (exit 1) that
names the tensor and the file, before its data is read; nothing outside the file is read and
memory stays small (issue 19 §2).

Every hostile file is a good file of the seed's model with one weight replaced (the fc10
kernel, or its PyTorch key), so the refusal is that weight's: the good files themselves
convert (test_the_good_files_convert). The good Keras file is written with h5py in the layout
Keras 3's save_weights writes (`layers/<group>/vars/<i>`, the layer's name as the group's
`name` attribute); the PyTorch one is the committed generated model's state_dict().
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.compiler.api import compile_spec
from tests.conftest import ROOT, SEED

GRAPH = compile_spec(str(SEED)).graph
FC10 = next(node for node in GRAPH.nodes if node.name == "fc10")
KERNEL = FC10.weights[0]  # Keras 'fc10' kernel, (in, out)
KERNEL_PATH = "layers/fc10/vars/0"
KEY = "fc10.weight"  # its PyTorch state-dict key, (out, in)
SECRET = b"SECRET-BYTES-OF-ANOTHER-FILE...."  # 32 bytes; 8 float32s
BIG = 1 << 30  # bytes a lying file declares: far above the seed's weights (96,133 float32s)
GROWTH_LIMIT = 200 * 2**20  # peak RSS growth allowed for reading any hostile file


# -- the good files -----------------------------------------------------------------------------
def write_keras_h5(target: Any) -> None:
    """Every weight of the seed's graph, in Keras 3's save_weights layout."""
    import h5py

    with h5py.File(target, "w") as f:
        for node in GRAPH.nodes:
            group = f.create_group(f"layers/{node.name}/vars")
            group.attrs["name"] = node.name
            for i, weight in enumerate(node.weights):
                group[str(i)] = np.full(weight.shape, 0.5, np.float32)
        f.create_group("vars").attrs["name"] = GRAPH.name


def torch_state() -> dict[str, Any]:
    module = importlib.import_module("generated.resnet_preact_torch")
    return dict(module.build_model().state_dict())


# -- raw zip files (zipfile cannot write a precompressed member or a lying size) -----------------
def raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """members: name, the stored bytes, method (0 stored, 8 deflated), declared size, CRC."""
    body, central = bytearray(), bytearray()
    for name, data, method, size, crc in members:
        encoded = name.encode()
        offset = len(body)
        body += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                size,
                len(encoded),
                0,
            )
            + encoded
            + data
        )
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0
    )
    path.write_bytes(bytes(body + central + end))


def zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes (a multiple of 1 MiB; about 1 KB per MiB),
    and their CRC-32: one compressed MiB repeated (a full flush makes each copy stand alone)."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    return block * (size >> 20) + c.flush(), crc


def stored(archive: zipfile.ZipFile) -> list[tuple[str, bytes, int, int, int]]:
    return [
        (i.filename, archive.read(i), 0, i.file_size, i.CRC)
        for i in archive.infolist()
        if not i.is_dir()
    ]


# -- the corpus ---------------------------------------------------------------------------------
def h5_variant(good: Path, secret: Path, replace: Callable[[Any, Any, Path], None]) -> Callable:
    def build(path: Path) -> None:
        import h5py

        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            group = f[KERNEL_PATH.rsplit("/", 1)[0]]
            del group["0"]
            replace(f, group, secret)

    return build


def secret_h5(folder: Path) -> Path:
    """Another HDF5 file, whose dataset has the kernel's shape and the secret's bytes."""
    import h5py

    path = folder / "secret.h5"
    if not path.exists():
        with h5py.File(path, "w") as f:
            values = np.resize(np.frombuffer(SECRET, np.float32), KERNEL.size)
            f["data"] = values.reshape(KERNEL.shape)
    return path


def ext_storage(f: Any, group: Any, secret: Path) -> None:
    import h5py

    external = [(str(secret), 0, h5py.h5f.UNLIMITED)]
    group.create_dataset("0", KERNEL.shape, "f4", external=external)


def ext_link(f: Any, group: Any, secret: Path) -> None:
    import h5py

    group["0"] = h5py.ExternalLink(str(secret_h5(secret.parent)), "/data")


def virtual(f: Any, group: Any, secret: Path) -> None:
    import h5py

    layout = h5py.VirtualLayout(KERNEL.shape, "f4")
    layout[:] = h5py.VirtualSource(str(secret_h5(secret.parent)), "data", shape=KERNEL.shape)
    group.create_virtual_dataset("0", layout)


def soft_link(f: Any, group: Any, secret: Path) -> None:
    import h5py

    group["0"] = h5py.SoftLink("/layers/conv0/vars/0")  # another layer's array in the file


def soft_loop(f: Any, group: Any, secret: Path) -> None:
    import h5py

    group["0"] = np.zeros(KERNEL.shape, np.float32)
    group["loop"] = h5py.SoftLink(f"/{KERNEL_PATH.rsplit('/', 1)[0]}/loop")  # to itself


def soft_up(f: Any, group: Any, secret: Path) -> None:
    import h5py

    group["0"] = np.zeros(KERNEL.shape, np.float32)
    group["up"] = h5py.SoftLink("/layers")  # to a group above it


def hard_loop(f: Any, group: Any, secret: Path) -> None:
    group["0"] = np.zeros(KERNEL.shape, np.float32)
    group["up"] = f["layers"]  # a hard link to a group above it


def dataset(*args: Any, **kwargs: Any) -> Callable[[Any, Any, Path], None]:
    def replace(f: Any, group: Any, secret: Path) -> None:
        group.create_dataset("0", *args, **kwargs)

    return replace


def h5_dtype(dtype: Any, fill: Any = 0) -> Callable[[Any, Any, Path], None]:
    return dataset(data=np.full(KERNEL.shape, fill, dtype))


def keras_zip(member: Callable[[Path], tuple[bytes, int, int, int]]) -> Callable[[Path], None]:
    """A .keras file whose model.weights.h5 is (stored bytes, method, declared size, CRC)."""

    def build(path: Path) -> None:
        raw_zip(
            path,
            [
                ("metadata.json", b"{}", 0, 2, zlib.crc32(b"{}")),
                ("model.weights.h5", *member(path)),
            ],
        )

    return build


def pt_variant(value: Callable[[], Any]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import torch

        state = torch_state()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sparse CSR, quantized and nested: betas
            state[KEY] = value()
            torch.save(state, path)

    return build


def pt_bomb(path: Path) -> None:
    """A .pt whose fc10.weight storage is a deflated record of BIG zero bytes: torch.load
    inflates it in full (PyTorch writes records stored, but reads deflated ones)."""
    import torch

    state = torch_state()
    marker = 123_457  # a numel found nowhere else in the pickle
    state[KEY] = torch.zeros(marker)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    numel = BIG // 4
    members = []
    with zipfile.ZipFile(buffer) as archive:
        records = stored(archive)
        pickle = next(data for name, data, *_ in records if name.endswith("data.pkl"))
        for name, data, method, size, crc in records:
            if name.endswith("data.pkl"):
                data = data.replace(
                    b"J" + struct.pack("<i", marker), b"J" + struct.pack("<i", numel)
                )
                members.append((name, data, 0, len(data), zlib.crc32(data)))
            elif size == marker * 4:
                members.append((name, *bomb_member()))
            else:
                members.append((name, data, method, size, crc))
    assert b"J" + struct.pack("<i", marker) in pickle  # the pickle says the numel as expected
    raw_zip(path, members)


def bomb_member() -> tuple[bytes, int, int, int]:
    data, crc = zeros_deflated(BIG)
    return data, 8, BIG, crc


def lying_member() -> tuple[bytes, int, int, int]:
    """The same stream, declared 1 MiB: the zip header lies about what it inflates to."""
    data, _ = zeros_deflated(BIG)
    return data, 8, 1 << 20, zlib.crc32(bytes(1 << 20))


def big_safetensors(path: Path) -> None:
    """A valid header declaring fc10.weight as BIG bytes of float32, the data a hole."""
    header = {KEY: {"dtype": "F32", "shape": [BIG // 4], "data_offsets": [0, BIG]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + BIG)  # sparse: nothing written


def huge_header(path: Path) -> None:
    """A safetensors file whose first 8 bytes declare a BIG JSON header."""
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", BIG) + b'{"a": 1}')
        f.truncate(8 + BIG)  # sparse: nothing written


def pt_pickle_bomb(path: Path) -> None:
    """A .pt whose pickle is a deflated record of BIG bytes."""
    buffer = io.BytesIO()
    import torch

    torch.save(torch_state(), buffer)
    with zipfile.ZipFile(buffer) as archive:
        members = [
            (name, *bomb_member()) if name.endswith("data.pkl") else (name, data, *rest)
            for name, data, *rest in stored(archive)
        ]
    raw_zip(path, members)


def safetensors_variant(value: Callable[[], Any]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in torch_state().items()}
        state[KEY] = value()
        save_file(state, path)

    return build


def torch_value(name: str) -> Callable[[], Any]:
    def value() -> Any:
        import torch

        shape = tuple(reversed(KERNEL.shape))  # (out, in)
        zeros = torch.zeros(shape)
        return {
            "sparse": lambda: zeros.to_sparse(),
            "sparse_csr": lambda: zeros.to_sparse_csr(),
            "meta": lambda: torch.empty(BIG // 4, device="meta"),  # no data, a size that lies
            "quantized": lambda: torch.quantize_per_tensor(zeros, 0.1, 0, torch.qint8),
            "nested": lambda: torch.nested.nested_tensor(list(zeros)),
            "complex": lambda: torch.zeros(shape, dtype=torch.complex64),
            "bool": lambda: torch.zeros(shape, dtype=torch.bool),
            "list": lambda: [zeros],
            "dict": lambda: {"weight": zeros},
        }[name]()

    return value


def vlen(string: bool = False) -> Callable[[Any, Any, Path], None]:
    def replace(f: Any, group: Any, secret: Path) -> None:
        import h5py

        dtype = h5py.string_dtype() if string else h5py.vlen_dtype(np.float32)
        group.create_dataset("0", KERNEL.shape, dtype)

    return replace


def empty(f: Any, group: Any, secret: Path) -> None:
    import h5py

    group.create_dataset("0", data=h5py.Empty("f4"))


Maker = Callable[[Path, Path], Callable[[Path], None]]  # (good .weights.h5, secret) -> writer
CASES: dict[str, tuple[str, Maker, str, tuple[str, ...]]] = {}
"""name -> (file name, its maker, the error code, what the error's line says)."""


def h5_case(replace: Callable[[Any, Any, Path], None]) -> Maker:
    return lambda good, secret: h5_variant(good, secret, replace)


for _name, _replace, _code, _says in [
    ("external_storage", ext_storage, "E156", "another file"),
    ("external_link", ext_link, "E156", "another file"),
    ("virtual_dataset", virtual, "E156", "virtual dataset"),
    ("soft_link", soft_link, "E156", "soft link"),
    ("soft_link_loop", soft_loop, "E156", "soft link"),
    ("soft_link_up", soft_up, "E156", "soft link"),
    ("hard_link_loop", hard_loop, "E156", "second link"),
    ("size_lie", dataset((200_000, 200_000), "f4"), "E151", "(200000, 200000)"),
    ("size_lie_1gib", dataset((BIG // 4 // 4096, 4096), "f4"), "E151", "4096)"),
    (
        "compressed",
        dataset(data=np.zeros(KERNEL.shape, "f4"), compression="gzip"),
        "E156",
        "compressed",
    ),
    (
        "huge_chunks",
        dataset(KERNEL.shape, "f4", chunks=(1 << 20, 64), maxshape=(None, None)),
        "E156",
        "chunks",
    ),
    ("complex", h5_dtype(np.complex64, 1 + 2j), "E156", "complex"),
    ("string", h5_dtype("S4", b"abcd"), "E156", "strings"),
    ("compound", h5_dtype([("a", "f4"), ("b", "f4")]), "E156", "compound"),
    ("vlen", vlen(), "E156", "variable-length"),
    ("vlen_string", vlen(string=True), "E156", "strings"),
    (
        "subarray",
        dataset((KERNEL.shape[0],), np.dtype(("f4", KERNEL.shape[1:]))),
        "E156",
        "arrays",
    ),
    ("bool", h5_dtype(np.bool_, True), "E156", "bool"),
    ("empty_dataspace", empty, "E156", "empty"),
]:
    CASES[f"h5_{_name}"] = ("bad.weights.h5", h5_case(_replace), _code, ("fc10", _says))
CASES["keras_zip_bomb"] = (
    "bad.keras",
    lambda good, secret: keras_zip(lambda path: bomb_member()),
    "E157",
    ("model.weights.h5", "1.0 GiB"),
)
CASES["keras_lying_zip"] = (
    "bad.keras",
    lambda good, secret: keras_zip(lambda path: lying_member()),
    "E150",
    ("model.weights.h5",),
)
CASES["pt_zip_bomb"] = ("bad.pt", lambda good, secret: pt_bomb, "E157", ("data/", "1.0 GiB"))
CASES["safetensors_size_lie"] = (
    "bad.safetensors",
    lambda good, secret: big_safetensors,
    "E151",
    (f"'{KEY}'", f"({BIG // 4},)"),
)
CASES["safetensors_huge_header"] = (
    "bad.safetensors",
    lambda good, secret: huge_header,
    "E157",
    ("header", "1.0 GiB"),
)
CASES["keras_member_past_the_end"] = (
    "bad.keras",
    lambda good, secret: keras_zip(lambda path: (b"\x89HDF", 0, BIG, 0)),
    "E150",
    ("model.weights.h5", "two sizes"),
)
CASES["pt_pickle_bomb"] = (
    "bad.pt",
    lambda good, secret: pt_pickle_bomb,
    "E157",
    ("data.pkl", "1.0 GiB"),
)
for _name in ("sparse", "sparse_csr", "meta", "quantized", "nested", "complex", "bool"):
    CASES[f"pt_{_name}"] = (
        "bad.pt",
        lambda good, secret, n=_name: pt_variant(torch_value(n)),
        "E156",
        (f"'{KEY}'", _name.split("_")[0]),
    )
for _name in ("list", "dict"):
    CASES[f"pt_{_name}"] = (
        "bad.pt",
        lambda good, secret, n=_name: pt_variant(torch_value(n)),
        "E150",
        (f"'{KEY}'", "not a state dict of tensors"),
    )
for _name in ("complex", "bool"):
    CASES[f"safetensors_{_name}"] = (
        "bad.safetensors",
        lambda good, secret, n=_name: safetensors_variant(torch_value(n)),
        "E156",
        (f"'{KEY}'", _name),
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the hostile file (each in a folder of its own), and 'good.*' -> the good ones."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("corpus")
    good = root / "good.weights.h5"
    write_keras_h5(good)
    secret = root / "secret.bin"
    secret.write_bytes(np.resize(np.frombuffer(SECRET, np.uint8), KERNEL.size * 4).tobytes())
    files = {"good.weights.h5": good}
    with zipfile.ZipFile(root / "good.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", good.read_bytes())
    files["good.keras"] = root / "good.keras"
    with zipfile.ZipFile(root / "deflated.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", good.read_bytes())
    files["deflated.keras"] = root / "deflated.keras"
    torch.save(torch_state(), root / "good.pt")
    files["good.pt"] = root / "good.pt"
    save_file({k: v.contiguous() for k, v in torch_state().items()}, root / "good.safetensors")
    files["good.safetensors"] = root / "good.safetensors"
    for name, (filename, make, _, _) in CASES.items():
        folder = root / name
        folder.mkdir()
        make(good, secret)(folder / filename)
        files[name] = folder / filename
    return files


def output_for(source: Path) -> Path:
    keras = source.name.endswith((".h5", ".keras"))
    return source.parent / ("out.pt" if keras else "out.weights.h5")


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["good.weights.h5", "good.keras", "deflated.keras", "good.pt", "good.safetensors"]
)
def test_the_good_files_convert(
    archc: Any, corpus: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """...and the fc10 kernel arrives: the Keras file's (all 0.5) as the PyTorch (out, in)
    weight, the PyTorch file's as the Keras (in, out) kernel."""
    import h5py
    import torch

    keras = name.endswith((".h5", ".keras"))
    out = tmp_path / ("out.pt" if keras else "out.weights.h5")
    result = archc("weights", SEED, "--from", corpus[name], "--to", out)
    assert result.exit_code == 0, result.output
    if keras:
        got = torch.load(out, weights_only=True)[KEY].numpy()
        np.testing.assert_array_equal(got, np.full(tuple(reversed(KERNEL.shape)), 0.5))
    else:
        if name.endswith(".pt"):
            sent = torch.load(corpus[name], weights_only=True)[KEY].numpy()
        else:
            from safetensors.torch import load_file

            sent = load_file(corpus[name])[KEY].numpy()
        with h5py.File(out) as f:
            groups = [g for g in f["layers"].values() if g["vars"].attrs.get("name") == "fc10"]
            np.testing.assert_array_equal(groups[0]["vars/0"][()], sent.T)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_naming_the_tensor(
    archc: Any, corpus: dict[str, Path], name: str
) -> None:
    source = corpus[name]
    _, _, code, says = CASES[name]
    out = output_for(source)
    result = archc("weights", SEED, "--from", source, "--to", out)
    assert result.exit_code == 1, result.output
    line = next((x for x in result.output.splitlines() if f"error[{code}]" in x), "")
    assert line.startswith(f"{source}: error[{code}]: "), result.output
    assert all(word in line for word in says), line
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert "out of memory" not in result.output
    assert SECRET[:6].decode() not in result.output
    assert not out.exists() and sorted(p.name for p in source.parent.iterdir()) == [source.name]


def test_the_link_and_storage_refusals_name_the_other_file(
    archc: Any, corpus: dict[str, Path]
) -> None:
    """The message says which file the weight would have come from; its bytes stay unread."""
    secret = corpus["good.weights.h5"].parent / "secret.bin"
    for name, other in [
        ("h5_external_storage", secret),
        ("h5_external_link", secret_h5(secret.parent)),
    ]:
        result = archc("weights", SEED, "--from", corpus[name], "--to", output_for(corpus[name]))
        assert result.exit_code == 1 and str(other) in result.output, result.output


def test_no_hostile_file_takes_memory(corpus: dict[str, Path]) -> None:
    """One process converts a good file (so that every import and the models are built), then
    every hostile one: its peak RSS grows by less than GROWTH_LIMIT over all of them, and each
    ends in a SpecError of the case's code."""
    script = """
import json, resource, sys
from archc.backends.proof.weights import convert
from archc.compiler.diagnostics import SpecError
seed, good, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
convert(seed, good, good + ".pt")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = {}
for name, (source, target) in cases.items():
    try:
        convert(seed, source, target)
        codes[name] = "converted"
    except SpecError as exc:
        codes[name] = exc.diagnostics[0].code
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"growth_kib": growth, "codes": codes}))
"""
    cases = {name: [str(corpus[name]), str(output_for(corpus[name]))] for name in CASES}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(SEED),
            str(corpus["good.weights.h5"]),
            json.dumps(cases),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["codes"] == {name: CASES[name][2] for name in CASES}
    assert found["growth_kib"] * 1024 < GROWTH_LIMIT, found
    print(f"peak RSS growth over the hostile corpus: {found['growth_kib'] / 1024:.1f} MiB")


# -- a model with recurrent layers: parts' groups (cell, forward_layer, backward_layer) ----------
RNN_SPEC = ROOT / "specs" / "lstm.yaml"
RNN = compile_spec(str(RNN_SPEC), variant="small").graph
# Keras 3's save_weights layout of the small variant, as listed from a file Keras saved:
# Keras layer -> (its group, its own name, the parts holding its arrays, with their names)
RNN_LAYOUT = {
    "embed": ("layers/embedding", [("", "embed")]),
    "encoder": (
        "layers/bidirectional",
        [
            ("forward_layer", "forward_lstm"),
            ("forward_layer/cell", "lstm_cell"),
            ("backward_layer", "backward_lstm"),
            ("backward_layer/cell", "lstm_cell"),
        ],
    ),
    "decoder": ("layers/lstm", [("cell", "lstm_cell")]),
    "tagger": ("layers/dense", [("", "tagger")]),
}
FORWARD, BACKWARD = 0.25, 0.75  # the encoder's arrays, per direction


def write_rnn_h5(target: Path) -> None:
    import h5py

    with h5py.File(target, "w") as f:
        for node in RNN.nodes:
            if not node.weights:
                continue
            where, parts = RNN_LAYOUT[node.name]
            f.create_group(f"{where}/vars").attrs["name"] = node.name
            weights = list(node.weights)
            for part, name in parts:
                group = f.require_group(f"{where}/{part}/vars" if part else f"{where}/vars")
                group.attrs["name"] = name
                if part.endswith("layer"):
                    continue  # the direction's own group: no arrays
                mine = weights[: len(weights) // 2] if part.startswith("forward") else weights
                if part.startswith("backward"):
                    mine = weights[len(weights) // 2 :]
                fill = BACKWARD if part.startswith("backward") else FORWARD
                for i, weight in enumerate(mine):
                    group[str(i)] = np.full(weight.shape, fill, np.float32)
        f.create_group("vars").attrs["name"] = RNN.name


def test_recurrent_parts_convert_in_keras_order(archc: Any, tmp_path: Path) -> None:
    """HDF5 lists backward_layer before forward_layer; the arrays go by Keras' order."""
    import torch

    write_rnn_h5(tmp_path / "rnn.weights.h5")
    out = tmp_path / "rnn.pt"
    result = archc("weights", RNN_SPEC, "--variant", "small", "--from", tmp_path / "rnn.weights.h5",
                   "--to", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    state = torch.load(out, weights_only=True)
    for key, fill in [("weight_ih_l0", FORWARD), ("weight_ih_l0_reverse", BACKWARD)]:
        np.testing.assert_array_equal(state[f"encoder.{key}"].numpy(), fill)


def rnn_cell_link(f: Any) -> None:
    del f["layers/bidirectional/backward_layer/cell"]
    f["layers/bidirectional/backward_layer/cell"] = f["layers/bidirectional/forward_layer/cell"]


def rnn_cell_soft_link(f: Any) -> None:
    import h5py

    del f["layers/bidirectional/backward_layer/cell"]
    f["layers/bidirectional/backward_layer/cell"] = h5py.SoftLink(
        "/layers/bidirectional/forward_layer/cell"
    )


def rnn_dataset(where: str, **kwargs: Any) -> Callable[[Any], None]:
    def replace(f: Any) -> None:
        shape = f[where].shape
        del f[where]
        f.create_dataset(where, **{"shape": shape, "dtype": "f4", **kwargs})

    return replace


def rnn_external(f: Any) -> None:
    import h5py

    del f["layers/bidirectional/backward_layer/cell/vars/0"]
    f["layers/bidirectional/backward_layer/cell/vars/0"] = h5py.ExternalLink("other.h5", "/x")


def rnn_unknown_part(f: Any) -> None:
    f["layers/lstm/extra/vars/0"] = np.zeros(3, np.float32)


RNN_CASES = {
    "second_link": (rnn_cell_link, "E156", ("encoder", "second link")),
    "soft_link": (rnn_cell_soft_link, "E156", ("encoder", "soft link")),
    "external_link": (rnn_external, "E156", ("encoder", "another file")),
    "compressed": (
        rnn_dataset("layers/lstm/cell/vars/1", data=np.zeros((5, 20), "f4"), compression="gzip"),
        "E156",
        ("'decoder' [1]", "compressed"),
    ),
    "size_lie": (
        rnn_dataset("layers/bidirectional/backward_layer/cell/vars/1", shape=(200_000, 200_000)),
        "E151",
        ("'encoder' backward/recurrent_kernel", "(200000, 200000)"),
    ),
    "unknown_part": (rnn_unknown_part, "E150", ("'decoder'", "'extra'")),
}


@pytest.mark.parametrize("name", sorted(RNN_CASES))
def test_recurrent_parts_are_read_as_warily(archc: Any, tmp_path: Path, name: str) -> None:
    """A cell's or a direction's group is walked like any other: hard links only, each group
    once, every dataset's storage and type checked, shapes before data; and a part of a
    layer that no Keras layer archc writes has is refused, not read as a layer."""
    import h5py

    replace, code, says = RNN_CASES[name]
    source = tmp_path / "bad.weights.h5"
    write_rnn_h5(source)
    with h5py.File(source, "r+") as f:
        replace(f)
    out = tmp_path / "out.pt"
    result = archc("weights", RNN_SPEC, "--variant", "small", "--from", source, "--to", out)
    assert result.exit_code == 1, result.output
    line = next((x for x in result.output.splitlines() if f"error[{code}]" in x), "")
    assert line.startswith(f"{source}: error[{code}]: "), result.output
    assert all(word in line for word in says), line
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.weights.h5"]
