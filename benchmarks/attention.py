"""Generated attention against PyTorch's own modules, on the CPU, in one process.

  encoder: generated/transformer_encoder_torch.py (width 512, 8 heads, 128 steps, depth 2)
           vs nn.TransformerEncoder(nn.TransformerEncoderLayer(batch_first=True), 2)  batch 8
  encoder_no_fast_path: the same, torch's fast path off (torch.backends.mha), so that
           nn.TransformerEncoderLayer runs its Python forward of separate ops    batch 8
  gpt:     generated/gpt_torch.py (width 256, 4 heads, 128 tokens, depth 2, dropout 0)
           vs the same network of torch.nn modules (nn.Embedding, a position parameter,
           nn.TransformerEncoderLayer(norm_first=True, gelu) called causal, nn.LayerNorm,
           the tied head)                                                           batch 8
  mha:     one generated KerasMultiHeadAttention (width 512, 8 heads, 128 steps) vs
           nn.MultiheadAttention(batch_first=True), self-attention             batch 8
  packing: that generated module's self-attention, layer(x), vs layer(x, x): the packed
           in-projection against three separate ones (generated "torch" here)  batch 8

Each pair gets the same weights (copied from the generated model into torch's packed
layout) and the same input; outputs are checked equal first. Eval: eval mode, no grad (where
nn.TransformerEncoder and nn.MultiheadAttention take PyTorch's fused fast path). Training:
one SGD step on the sum of squares of the output. After warm-up the two are timed
alternately, A B B A ... (runtime.paired), so that load from other processes falls on both;
per pair the median times, their ratio generated / torch (the result, target <= 1.05), the
ratio of the minima and the spread of the per-round ratios (the noise).
Usage: python benchmarks/attention.py [--rounds N] [--only encoder,gpt,mha,packing,...] [--no-save]
Writes benchmarks/results/attention.json unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see runtime.py
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from runtime import _summary, paired  # noqa: E402

BATCH = 8
THREADS = 2


def _load(name: str) -> Any:
    import importlib.util

    path = ROOT / "generated" / f"{name}_torch.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_attention(src: Any, mha: Any) -> None:
    """A KerasMultiHeadAttention's q/k/v/output kernels into nn.MultiheadAttention's."""
    import torch

    with torch.no_grad():
        kernels = (src.query_kernel, src.key_kernel, src.value_kernel)
        mha.in_proj_weight.copy_(torch.cat([k.flatten(1).T for k in kernels]))
        biases = (src.query_bias, src.key_bias, src.value_bias)
        mha.in_proj_bias.copy_(torch.cat([b.flatten() for b in biases]))
        mha.out_proj.weight.copy_(src.output_kernel.flatten(0, 1).T)
        mha.out_proj.bias.copy_(src.output_bias)


def copy_module(src: Any, dst: Any) -> None:
    import torch

    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def compare(gen: Any, ref: Any, x: Any, rounds: int, ref_call: Callable[[Any], Any]) -> dict:
    import torch

    with torch.no_grad():
        gen.eval(), ref.eval()
        diff = (gen(x) - ref_call(x)).abs().max().item()
        gen.train(), ref.train()
        train_diff = (gen(x) - ref_call(x)).abs().max().item()
    assert max(diff, train_diff) < 1e-3, f"outputs differ by {diff}, {train_diff}"

    def forward(model: Any, call: Callable[[Any], Any]) -> Callable[[], object]:
        def run() -> object:
            model.eval()
            with torch.no_grad():
                return call(x)

        return run

    def train(model: Any, call: Callable[[Any], Any]) -> Callable[[], object]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def run() -> object:
            model.train()
            opt.zero_grad()
            loss = call(x).square().mean()
            loss.backward()
            opt.step()
            return loss

        return run

    res = _summary("forward", *paired(forward(gen, gen), forward(ref, ref_call), rounds))
    res |= _summary("train", *paired(train(gen, gen), train(ref, ref_call), rounds))
    return {"max_abs_output_diff_eval_train": [diff, train_diff], **res}


def encoder(rounds: int, fast_path: bool = True) -> dict[str, Any]:
    import torch
    from torch import nn

    width, heads, steps, depth = 512, 8, 128, 2
    gen = _load("transformer_encoder").build_model(depth=depth)
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.0, batch_first=True)
    ref = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
    for g, r in zip(gen.layers_, ref.layers, strict=True):
        copy_attention(g.layers_self_attn, r.self_attn)
        copy_module(g.layers_linear1, r.linear1)
        copy_module(g.layers_linear2, r.linear2)
        copy_module(g.layers_norm1_, r.norm1)
        copy_module(g.layers_norm2_, r.norm2)
    x = torch.randn(BATCH, steps, width)
    if fast_path:
        return compare(gen, ref, x, rounds, ref)
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return compare(gen, ref, x, rounds, ref)
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def gpt(rounds: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    vocab, context, width, heads, depth = 1000, 128, 256, 4, 2
    gen = _load("gpt").build_model(
        vocab_size=vocab, context=context, width=width, heads=heads, depth=depth, dropout=0.0
    )

    class TorchGpt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(vocab, width)
            self.wpe = nn.Parameter(torch.zeros(context, width))
            layer = nn.TransformerEncoderLayer(
                width, heads, 4 * width, 0.0, "gelu", batch_first=True, norm_first=True
            )
            self.h = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            self.ln_f = nn.LayerNorm(width)
            self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(context))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.wte(tokens) + self.wpe
            x = self.h(x, mask=self.causal, is_causal=True)
            return F.linear(self.ln_f(x), self.wte.weight)

    ref = TorchGpt()
    with torch.no_grad():
        ref.wte.weight.copy_(gen.wte.weight)
        ref.wpe.copy_(gen.wpe.weight)
    for g, r in zip(gen.h, ref.h.layers, strict=True):
        copy_attention(g.h_attn, r.self_attn)
        copy_module(g.h_mlp_c_fc, r.linear1)
        copy_module(g.h_mlp_c_proj, r.linear2)
        copy_module(g.h_ln1, r.norm1)
        copy_module(g.h_ln2, r.norm2)
    copy_module(gen.ln_f, ref.ln_f)
    x = torch.randint(0, vocab, (BATCH, context))
    return compare(gen, ref, x, rounds, ref)


def mha(rounds: int) -> dict[str, Any]:
    import torch
    from torch import nn

    width, heads, steps = 512, 8, 128
    gen = _load("transformer_encoder").KerasMultiHeadAttention(width, heads, width // heads)
    ref = nn.MultiheadAttention(width, heads, batch_first=True)
    copy_attention(gen, ref)
    x = torch.randn(BATCH, steps, width)
    return compare(gen, ref, x, rounds, lambda t: ref(t, t, t, need_weights=False)[0])


def packing(rounds: int) -> dict[str, Any]:
    """The same generated module, self-attention (packed, one in-projection) against
    layer(x, x) (query and value given apart: three products, the path before packing)."""
    import torch

    width, heads, steps = 512, 8, 128
    gen = _load("transformer_encoder").KerasMultiHeadAttention(width, heads, width // heads)
    x = torch.randn(BATCH, steps, width)
    return compare(gen, gen, x, rounds, lambda t: gen(t, t))


PAIRS: dict[str, Callable[[int], dict[str, Any]]] = {
    "encoder": encoder,
    "encoder_no_fast_path": lambda rounds: encoder(rounds, fast_path=False),
    "gpt": gpt,
    "mha": mha,
    "packing": packing,
}


def main(rounds: int, only: list[str]) -> dict[str, object]:
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    out: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": THREADS,
        "batch": BATCH,
        "rounds": rounds,
        "target_ratio": 1.05,
        "pairs": {},
    }
    for name in only:
        res = PAIRS[name](rounds)
        out["pairs"][name] = res
        print(
            f"{name:8s} eval {res['forward_ratio']:.3f}x (min {res['forward_ratio_of_min']:.3f}x,"
            f" rounds {res['forward_round_ratios_min_q1_median_q3_max']})  train"
            f" {res['train_ratio']:.3f}x (min {res['train_ratio_of_min']:.3f}x,"
            f" rounds {res['train_round_ratios_min_q1_median_q3_max']})",
            flush=True,
        )
    out["loadavg_1m_start_end"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", default=",".join(PAIRS))
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/attention.json"))
    args = parser.parse_args()
    result = main(args.rounds, args.only.split(","))
    if not args.no_save:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
