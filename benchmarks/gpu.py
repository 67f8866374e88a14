"""Prepared GPU benchmark: generated ResNet50 and GPT training steps against the same
architectures written directly in PyTorch, with channels_last and torch.compile on and off.

  resnet50: generated/resnet50_torch.py vs torchvision.models.resnet50 (batch 64, 224x224;
            torchvision's is Keras' ResNet50 but for Keras' conv biases and explicit padding:
            see benchmarks/gpu_runtime.py)
  gpt:      generated/gpt_torch.py (the spec's GPT-2 variant, context 256) vs a GPT written here
            with nn.MultiheadAttention (pre-norm blocks, the same parameter count, asserted)

For each model and each of the four settings (channels_last off/on: images only; torch.compile
off/on): one SGD step, median of ROUNDS CUDA-synchronised steps after warm-up, timed
alternately with the hand-written twin in one process; the ratio generated / hand-written.
Without a CUDA device it says so and exits 0 (`benchmarks/gpu_runtime.py` keeps the older
forward/step comparison and its CPU smoke run).

Usage: python benchmarks/gpu.py [ROUNDS] [OUT.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GPT = {"vocab_size": 50257, "context": 256, "width": 768, "depth": 12, "heads": 12}


def hand_gpt(vocab_size: int, context: int, width: int, depth: int, heads: int) -> Any:
    """GPT as one writes it in PyTorch: token and learned position embeddings, pre-norm
    blocks (LayerNorm, causal nn.MultiheadAttention, residual; LayerNorm, 4x GELU MLP,
    residual), a final LayerNorm and a bias-free head tied to the token embedding (GPT-2's)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(width, eps=1e-5)
            self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(width, eps=1e-5)
            self.mlp = nn.Sequential(
                nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
            )

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    class Gpt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(vocab_size, width)
            self.wpe = nn.Parameter(torch.zeros(context, width))
            self.h = nn.ModuleList(Block() for _ in range(depth))
            self.ln_f = nn.LayerNorm(width, eps=1e-5)
            self.lm_head = nn.Linear(width, vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight  # tied, as GPT-2 and specs/gpt.yaml
            causal = torch.ones(context, context, dtype=torch.bool).triu(1)
            self.register_buffer("mask", causal, persistent=False)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.wte(tokens) + self.wpe
            for block in self.h:
                x = block(x, self.mask)
            return self.lm_head(self.ln_f(x))

    return Gpt()


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _step(model: Any, x: Any, y: Any, probs: bool, compiled: bool) -> Any:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    forward = torch.compile(model) if compiled else model

    def run() -> object:
        model.train()
        opt.zero_grad(set_to_none=True)
        out = forward(x)
        if out.dim() == 3:  # token logits
            loss = F.cross_entropy(out.flatten(0, 1), y.flatten())
        else:
            loss = F.nll_loss(torch.log(out + 1e-7), y) if probs else F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        return loss

    return run


def bench(rounds: int) -> dict[str, object]:
    import torch
    import torchvision
    from gpu_runtime import paired

    from generated.gpt_torch import build_model as gpt_generated
    from generated.resnet50_torch import build_model as resnet50_generated

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    rows: list[dict[str, object]] = []
    pairs = {
        "resnet50": (
            lambda: resnet50_generated(),
            lambda: torchvision.models.resnet50(weights=None),
            lambda: torch.randn(64, 3, 224, 224, device=device),
            lambda: torch.randint(0, 1000, (64,), device=device),
        ),
        "gpt": (
            lambda: gpt_generated(**{**GPT, "dropout": 0.0}),
            lambda: hand_gpt(**GPT),
            lambda: torch.randint(0, GPT["vocab_size"], (8, GPT["context"]), device=device),
            lambda: torch.randint(0, GPT["vocab_size"], (8, GPT["context"]), device=device),
        ),
    }
    for name, (make_gen, make_hand, make_x, make_y) in pairs.items():
        for channels_last in (False, True) if name == "resnet50" else (False,):
            for compiled in (False, True):
                gen, hand = make_gen().to(device), make_hand().to(device)
                if name == "gpt":
                    assert _count(gen) == _count(hand), (_count(gen), _count(hand))
                x, y = make_x(), make_y()
                if channels_last:
                    gen = gen.to(memory_format=torch.channels_last)
                    hand = hand.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)
                tg, th = paired(
                    _step(gen, x, y, True, compiled), _step(hand, x, y, False, compiled), rounds
                )
                rows.append(
                    {
                        "model": name,
                        "channels_last": channels_last,
                        "torch_compile": compiled,
                        "batch": int(x.shape[0]),
                        "train_generated_ms": tg * 1e3,
                        "train_hand_ms": th * 1e3,
                        "train_ratio": tg / th,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                del gen, hand
                torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "rounds": rounds,
        "results": rows,
    }


def main(argv: list[str]) -> int:
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing timed (run it on a GPU machine)")
        return 0
    result = bench(int(argv[0]) if argv else 20)
    text = json.dumps(result, indent=2)
    print(text)
    if len(argv) > 1:
        Path(argv[1]).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
