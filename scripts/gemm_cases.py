"""One ESM-2 layer's GEMMs as random fp16 cases, shared by the GEMM sweeps (epilogue_sweep.py,
quack_tune.py): weights as checkpoints store them ([out, in]), biases, inputs, FLOPs, and the fp64
reference of QKV + rotary on the interleaved q/k rows the quack epilogue expects."""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from embed_worker import epilogues as E

OPS = ("qkv", "out", "fc1", "fc2")


def err(got: torch.Tensor, ref: torch.Tensor) -> dict:
    d = (got.float() - ref).abs()
    return {"max_abs": float(d.max()), "rel_l2": float(d.norm() / ref.norm().clamp_min(1e-30))}


def layer(D: int, M: int, dev: torch.device, dt: torch.dtype = torch.float16, seed: int = 0) -> SimpleNamespace:
    """W, b {op: tensor}; x (a residual stream, larger values), h (LN output), att (attention
    output), f (GELU output) as inputs; inputs {op: its A operand}; flops {op: 2 M N K}."""
    g = torch.Generator(device=dev).manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, device=dev, dtype=torch.float32, generator=g) * scale).to(dt)

    W = {"qkv": rnd(3 * D, D, scale=D ** -0.5), "out": rnd(D, D, scale=D ** -0.5),
         "fc1": rnd(4 * D, D, scale=D ** -0.5), "fc2": rnd(D, 4 * D, scale=(4 * D) ** -0.5)}
    b = {k: rnd(w.shape[0], scale=0.1) for k, w in W.items()}
    x, h, att = rnd(M, D, scale=3.0), rnd(M, D), rnd(M, D)
    f = F.gelu(rnd(M, 4 * D))
    return SimpleNamespace(W=W, b=b, x=x, h=h, att=att, f=f, inputs={"qkv": h, "out": att, "fc1": h, "fc2": f},
                           flops={k: 2 * M * w.shape[0] * w.shape[1] for k, w in W.items()})


def qkv_rope(case: SimpleNamespace, period: int) -> SimpleNamespace:
    """QKV + rotary for case.h with positions restarting every `period` tokens: lin (the fused
    projection with q/k rows interleaved, as use_kernels("quack") leaves them), freq
    (epilogues.rope_freq_table), pos (int64) and posf (float32) [M], inv_freq, and want (fp32 of
    an fp64 rotation of the fp32 GEMM) [M, 3D]."""
    h = case.h
    M, D = h.shape
    H, Dh = D // 64, 64
    dev = h.device
    lin = torch.nn.Linear(D, 3 * D, device=dev, dtype=h.dtype)
    with torch.no_grad():
        lin.weight.copy_(case.W["qkv"])
        lin.bias.copy_(case.b["qkv"])
    E.interleave_qk_rows(lin, H, Dh)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, Dh, 2).float() / Dh))
    pos = torch.arange(M, device=dev) % period
    y = (h.float() @ lin.weight.detach().float().t() + lin.bias.detach().float()).double()  # [M, 3D]
    ang = pos.double()[:, None] * inv_freq.to(dev).double()[None, :]  # [M, Dh/2]
    c, s = ang.cos().repeat(1, 2 * H), ang.sin().repeat(1, 2 * H)
    x1, x2 = y[:, 0:2 * D:2], y[:, 1:2 * D:2]
    want = y.clone()
    want[:, 0:2 * D:2], want[:, 1:2 * D:2] = x1 * c - x2 * s, x1 * s + x2 * c
    return SimpleNamespace(lin=lin, freq=E.rope_freq_table(inv_freq, H, Dh, dev), pos=pos, posf=pos.float(),
                           inv_freq=inv_freq, want=want.float())
