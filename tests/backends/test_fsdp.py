"""The generated GPT trains sharded with PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`).

The recipe README's "Training at scale" gives, on two CPU processes (gloo, spawned as in
test_ddp.py): the model built on the meta device (no memory for weights), each decoder block
and then the whole model sharded with `fully_shard`, the shards allocated with `to_empty` and
filled with Keras' initial values by each module's own `reset_parameters()`, as FSDP expects
(the model's own, which calls them all, left out: each generated module draws Keras' rule
itself, Glorot-uniform kernels, zero biases, the embeddings' and LayerNorm's own; a plain
`nn.Linear` would draw PyTorch's Kaiming rule). Two checks:

- the sharded model's initial values, gathered, follow the unsharded model's distributions
  (constants equal; random tensors: the same standard deviation to 3%, a difference
  Kaiming's rule in place of Glorot's exceeds, ~9% on the smallest fan ratio here);
- one SGD step, each rank on half the batch, equals one process's step on the whole batch:
  the loss (the ranks' mean) and every updated weight, gathered (FSDP averages the ranks'
  gradients in its reduce-scatter; the halves are equal, so the average is the batch mean).

float64 and dropout 0 (random masks differ per process), so rounding stays near 1e-15 and the
tolerance (1e-10 relative) is far below what a wrong reduction or a missed shard gives.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)
pytest.importorskip("torch.distributed.fsdp")

from tests.backends.test_ddp import _free_port  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

WORLD = 2
BATCH = 4  # 2 per rank
LR = 0.1
PARAMS = {"depth": 2, "dropout": 0.0}  # the spec's small default with two blocks


def _model(device: str = "cpu") -> Any:
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from generated.gpt_torch import build_model

    with torch.device(device):
        return build_model(**PARAMS)


def _loss(model: Any, tokens: Any, targets: Any) -> Any:
    logits = model(tokens)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _sharded() -> Any:
    """The recipe: meta build, fully_shard per block and the whole, to_empty, then each
    module's own reset_parameters (Keras' initial values, module by module)."""
    from torch.distributed.fsdp import fully_shard

    model = _model("meta")
    for block in model.h:
        fully_shard(block)
    fully_shard(model)
    model.to_empty(device="cpu")
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def _full(model: Any) -> dict[str, Any]:
    """Every parameter, gathered from the shards."""
    return {k: v.full_tensor().detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
    )
    try:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        torch.manual_seed(1 + rank)
        model = _sharded()
        out: dict[str, Any] = {"init": _full(model)}
        start = torch.load(Path(folder) / "start.pt", weights_only=True)
        set_model_state_dict(
            model, start["weights"], options=StateDictOptions(full_state_dict=True)
        )
        half = BATCH // WORLD
        tokens = start["tokens"][rank * half : (rank + 1) * half]
        targets = start["targets"][rank * half : (rank + 1) * half]
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        opt.zero_grad()
        loss = _loss(model, tokens, targets)
        loss.backward()  # FSDP reduce-scatters (averages) the gradients here
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        out["loss"] = total / WORLD
        out["weights"] = _full(model)
        if rank == 0:
            torch.save(out, Path(folder) / "rank0.pt")
    finally:
        dist.destroy_process_group()


def _spawn(folder: Path) -> None:
    import torch.multiprocessing as mp

    if os.path.isdir("/sys/class/net/lo"):  # keep gloo on the loopback interface
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for attempt in range(3):
        try:
            mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=True)
            return
        except mp.ProcessRaisedException as exc:
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise


def _close(got: Any, want: Any, what: str) -> None:
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    assert diff <= 1e-13 + 1e-10 * scale, f"{what}: max|Δ| {diff:.3g} (largest value {scale:.3g})"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("fsdp")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = _model()
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        gen = torch.Generator().manual_seed(1)
        vocab, context = model.wte.num_embeddings, model.wpe.weight.shape[0]
        tokens = torch.randint(0, vocab, (BATCH, context), generator=gen)
        targets = torch.randint(0, vocab, (BATCH, context), generator=gen)
        torch.save({"weights": weights, "tokens": tokens, "targets": targets}, folder / "s.pt")
        (folder / "s.pt").rename(folder / "start.pt")
        _spawn(folder)
        # one process, the whole batch, the same weights
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        opt.zero_grad()
        loss = _loss(model, tokens, targets)
        loss.backward()
        opt.step()
        torch.manual_seed(2)
        unsharded_init = {k: v.detach().clone() for k, v in _model().state_dict().items()}
    finally:
        torch.set_default_dtype(previous)
    got = torch.load(folder / "rank0.pt", weights_only=True)
    return {
        "got": got,
        "loss": loss.detach(),
        "weights": {k: v.detach() for k, v in model.state_dict().items()},
        "start": weights,
        "unsharded_init": unsharded_init,
    }


def test_fsdp_step_equals_one_process_on_the_whole_batch(runs: dict[str, Any]) -> None:
    got, want = runs["got"], runs["weights"]
    _close(got["loss"], runs["loss"], "loss")
    assert sorted(got["weights"]) == sorted(want)
    moved = 0
    for name, w in want.items():
        _close(got["weights"][name], w, name)
        moved += int(not torch.equal(w, runs["start"][name]))
    assert moved == len(want)  # every weight took the step (it can fail: frozen, no grad)


def test_sharded_initial_values_follow_keras_distributions(runs: dict[str, Any]) -> None:
    got, want = runs["got"]["init"], runs["unsharded_init"]
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, name
        if torch.all(w == w.flatten()[0]):  # ones, zeros: equal
            assert torch.equal(g, w), name
            continue
        assert not torch.equal(g, w), name  # drawn, not copied
        a, b = g.std().item(), w.std().item()  # to ~0.8% for these sizes (8192+ values)
        assert abs(a - b) <= 0.03 * b, f"{name}: std {a:.4g} vs unsharded {b:.4g}"
