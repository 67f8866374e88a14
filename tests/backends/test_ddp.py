"""A generated PyTorch model trains under DistributedDataParallel.

Two processes on the CPU (gloo backend, torch.multiprocessing spawn, MASTER_ADDR=127.0.0.1 and
a free port) each take half of a batch through `generated/resnet_preact_torch.py`, with L2 on
(`regularization_loss()`), for two SGD steps; their gradients must equal those of one process
that takes the same steps on the whole batch, DDP's averaging included (each rank's loss is
the mean over its half, and DDP averages the ranks' gradients: the mean over the batch).

BatchNorm statistics aside: in training mode each rank normalises with its own half's batch
statistics, so the whole-batch reference differs by construction. The test therefore runs
twice from the same weights:
- BatchNorm in inference mode (the moving statistics): DDP == one process on the whole batch;
- BatchNorm in training mode: DDP == one process that averages the gradients of the two halves,
  each normalised with its own statistics (what DDP computes without SyncBatchNorm).
SyncBatchNorm is not used: `convert_sync_batchnorm` would replace the generated KerasBatchNorm
(Keras' moving-variance rule) by torch's own.

Everything runs in float64, so rounding differences (the all-reduce sums in another order) stay
near 1e-15 and the tolerance (1e-10 relative) is far below what a wrong averaging gives.
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from tests.conftest import ROOT  # noqa: E402

WORLD = 2
BATCH = 8  # 4 per rank
STEPS = 2
LR = 0.1
REG = 1e-3  # L2 factor of every kernel (the spec's `reg` parameter)
MODES = ("bn_inference", "bn_training")


def _model() -> Any:
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from generated.resnet_preact_torch import build_model

    # the seed with two stages at 16x16: every kind of layer, small enough for seconds
    return build_model(input_shape=(16, 16, 3), num_stages=2, reg=REG).double()


def _set_mode(model: Any, mode: str) -> None:
    model.train()
    if mode == "bn_inference":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _loss(model: Any, x: Any, y: Any) -> Any:
    """Negative log-likelihood of the softmax outputs (mean over the samples) plus L2."""
    probs = model(x)
    return torch.nn.functional.nll_loss(probs.log(), y) + model.regularization_loss()


def _grads(model: Any) -> dict[str, Any]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
    )
    try:
        start = torch.load(Path(folder) / "start.pt", weights_only=True)
        half = BATCH // WORLD
        x = start["x"][rank * half : (rank + 1) * half]
        y = start["y"][rank * half : (rank + 1) * half]
        out: dict[str, Any] = {}
        for mode in MODES:
            model = _model()
            model.load_state_dict(start["weights"])
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            opt = torch.optim.SGD(ddp.parameters(), lr=LR)
            _set_mode(model, mode)
            for step in range(STEPS):
                opt.zero_grad()
                probs = ddp(x)
                loss = torch.nn.functional.nll_loss(probs.log(), y) + model.regularization_loss()
                loss.backward()  # DDP all-reduces (averages) the gradients here
                out[f"{mode}/{step}"] = _grads(model)
                opt.step()
            out[f"{mode}/weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _reference(start: dict[str, Any]) -> dict[str, Any]:
    """One process: the whole batch (BN inference), or the two halves averaged (BN training)."""
    out: dict[str, Any] = {}
    half = BATCH // WORLD
    for mode in MODES:
        model = _model()
        model.load_state_dict(start["weights"])
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        _set_mode(model, mode)
        for step in range(STEPS):
            opt.zero_grad()
            if mode == "bn_inference":
                loss = _loss(model, start["x"], start["y"])
            else:
                parts = [
                    _loss(model, start["x"][i : i + half], start["y"][i : i + half])
                    for i in range(0, BATCH, half)
                ]
                loss = sum(parts) / len(parts)
            loss.backward()
            out[f"{mode}/{step}"] = _grads(model)
            opt.step()
        out[f"{mode}/weights"] = {k: v.clone() for k, v in model.state_dict().items()}
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(folder: Path) -> None:
    """Two ranks; the port is free when chosen, but another process may take it first: a
    failure to bind is retried with a new port."""
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
    """Equal to rounding: 1e-10 relative to the largest value, or 1e-13 absolute (a
    convolution's bias before a training-mode BatchNorm has a gradient of zero, computed as
    values near 1e-17)."""
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    assert diff <= 1e-13 + 1e-10 * scale, f"{what}: max|Δ| {diff:.3g} (largest value {scale:.3g})"


def test_ddp_gradients_equal_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = _model().state_dict()
    x = torch.randn(BATCH, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 5, (BATCH,))
    start = {"weights": weights, "x": x, "y": y}
    torch.save(start, tmp_path / "start.pt")

    _spawn(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    want = _reference(start)

    for key, grads in want.items():
        if key.endswith("/weights"):
            continue
        assert sorted(grads) == sorted(ranks[0][key]), key
        assert max(g.abs().max().item() for g in grads.values()) > 1e-3, key
        for name, g in grads.items():
            for r in range(WORLD):
                _close(ranks[r][key][name], g, f"{key} rank {r} {name}")
    for mode in MODES:
        # after the steps the ranks hold the same parameters as the reference
        for name, w in want[f"{mode}/weights"].items():
            if w.is_floating_point() and "running" not in name:
                for r in range(WORLD):
                    _close(ranks[r][f"{mode}/weights"][name], w, f"{mode} rank {r} {name}")


def test_each_rank_alone_would_differ(tmp_path: Path) -> None:
    """The comparison above can fail: one half's gradient is not the whole batch's."""
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(BATCH, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 5, (BATCH,))
    _set_mode(model, "bn_inference")
    _loss(model, x, y).backward()
    whole = _grads(model)
    model.zero_grad()
    _loss(model, x[: BATCH // WORLD], y[: BATCH // WORLD]).backward()
    half = _grads(model)
    with pytest.raises(AssertionError):
        _close(half["fc10.weight"], whole["fc10.weight"], "fc10.weight")
