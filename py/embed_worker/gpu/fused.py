"""The block loop of ESM2 on the GPU fast path: cuBLAS GEMMs + varlen attention + Triton kernels.
arrange.py installs run_blocks as the model's block loop for "triton" and "quack".

Same arithmetic as ``esm2.model.Block`` (fair-esm's ESM2 layer), arranged so that every activation
makes as few trips through memory as possible:

  h = LN1(x)                                   (layer 0; later layers get h from the step below)
  qkv = h Wqkv + b                             cuBLAS, bias in the epilogue          [T, 3D]
  rotary_(qkv)                                 q * Dh^-0.5 then rotary; k rotary      in place
                                               ("quack": one GEMM, rotary in its epilogue on
                                               interleaved q/k rows; Dh^-0.5 in the softmax)
  a = attention(q, k, v)                       on views of qkv: packed-tile Triton kernel for
                                               short sequences (<= 256) unless their tiles fit
                                               aligned ones well (attention_kernel);
                                               FlashAttention-4 (model.long_attention) past
                                               long_attention.LONG_MIN_LEN where loaded; else
                                               sequence-aligned Triton tiles up to 1,024; else
                                               the varlen flash kernel                [T, H, Dh]
  o = a Wo + b                                 cuBLAS ("quack": quack's GEMM where   [T, D]
                                               the arrangement's configs pin a tile config
                                               (epilogues.CONFIGS); FC2 too)
  x, h = x + o, LN2(x + o)                     one kernel, x stored over o; where quack runs
                                               the GEMM, its store adds o into x in place
                                               and one LN pass reads x (epilogues.linear)
  f = gelu(h W1 + b1)                          cuBLAS + in-place erf GELU             [T, 4D]
                                               "quack": one GEMM, GELU in its epilogue
  y = f W2 + b2                                                                      [T, D]
  x, h = x + y, LN1'(x + y)                    next layer's LN1 (or emb_layer_norm_after)

Nothing is written in place into a tensor that was handed out as a representation: x is a
private copy whenever keep() took it (and the caller passes a private x).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from ..esm2 import attention as A
from . import attention_kernels as AK
from . import kernels as K
from . import long_attention as LA


def _cublas_linear(op: str, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   add_to: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(a, weight, bias)


def _add_linear(linear, op: str, x: torch.Tensor, a: torch.Tensor, lin: torch.nn.Linear,
                norm: torch.nn.LayerNorm | None):
    """(x + a Wᵀ + b, LN(x + a Wᵀ + b) [T, D] or None without a norm): in place into x where
    `linear` adds there, else the GEMM's output then one add+LN pass (the sum stored over the
    GEMM's output)."""
    s = linear(op, a, lin.weight, lin.bias, add_to=x)
    if norm is None:
        return (x if s is x else s.add_(x)), None
    return (x, K.layer_norm(x, norm)) if s is x else K.add_layer_norm(x, s, norm)


def attention_kernel(dtype: torch.dtype, head_dim: int, max_seqlen: int, has_long: bool) -> str:
    """Which attention a batch takes: "packed" (short sequences that fill aligned tiles badly),
    "long" (FlashAttention-4, past long_attention.LONG_MIN_LEN, where loaded: has_long),
    "aligned" (sequence-aligned Triton tiles) or "varlen" (the flash kernel)."""
    aligned = AK.aligned_attention_fits(dtype, head_dim, max_seqlen)
    if AK.packed_attention_fits(dtype, head_dim, max_seqlen) and not (aligned and AK.aligned_beats_packed(max_seqlen)):
        return "packed"
    if has_long and max_seqlen > LA.LONG_MIN_LEN:
        return "long"
    return "aligned" if aligned else "varlen"


def _attention(model, T: int, seq_id: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
               dtype: torch.dtype) -> Callable:
    """attend(q, k, v, scale) -> [T, H, Dh] for every layer of this batch (attention_kernel's choice)."""
    kind = attention_kernel(dtype, model.layers[0].head_dim, max_seqlen, model.long_attention is not None)
    if kind == "packed":
        cu, seq32 = cu_seqlens.to(torch.int32), seq_id.to(torch.int32)

        def attend(q, k, v, scale):
            return AK.packed_attention(q, k, v, seq32, cu, scale)
    elif kind == "long":
        cu, long_attention = cu_seqlens.to(torch.int32), model.long_attention

        def attend(q, k, v, scale):
            return long_attention(q, k, v, cu, max_seqlen, scale)
    elif kind == "aligned":
        table = AK.block_table(cu_seqlens, T)  # once for all layers

        def attend(q, k, v, scale):
            return AK.aligned_attention(q, k, v, cu_seqlens, scale, table, max_seqlen)
    else:
        def attend(q, k, v, scale):
            return A.varlen_attention(q, k, v, cu_seqlens, max_seqlen, scale)
    return attend


def _quack_steps(model, pos: torch.Tensor):
    """(linear, project, ffn_in) of the "quack" arrangement: q/k rows interleaved by
    arrange("quack"), rotary in the QKV GEMM's epilogue, GELU in FC1's, out/FC2 on quack where the
    arrangement's configs pin a tile config."""
    from . import epilogues as E
    gemms = model.arrangement
    linear = functools.partial(E.linear, configs=gemms.configs, in_place=gemms.residual_in_place)
    posf = pos.to(torch.float32)
    freq = E.quack_freq(model)

    def project(layer, h):  # -> qkv [T, 3D] rotated, and the softmax scale q still needs
        return E.qkv_rope(h, layer.qkv.weight, layer.qkv.bias, posf, freq), layer.head_dim ** -0.5

    def ffn_in(layer, h):
        return E.fc1_act(h, layer.fc1.weight, layer.fc1.bias, model.activation)
    return linear, project, ffn_in


def _triton_steps(model, pos: torch.Tensor, max_seqlen: int, device: torch.device):
    """(linear, project, ffn_in) of the "triton" arrangement: cuBLAS GEMMs, a rotary pass, GELU in place."""
    cos, sin = model.rotary_tables(max_seqlen, device)  # positions < max_seqlen; no device sync

    def project(layer, h):
        qkv = F.linear(h, layer.qkv.weight, layer.qkv.bias)  # [T, 3D]
        return K.rotary_(qkv, pos, cos, sin, layer.n_heads, layer.head_dim ** -0.5), 1.0

    def ffn_in(layer, h):
        f = F.linear(h, layer.fc1.weight, layer.fc1.bias)  # [T, F]
        layer.act_(f)  # GELU in place (model.ACTIVATIONS)
        return f
    return _cublas_linear, project, ffn_in


def run_blocks(model, x: torch.Tensor, pos: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
               max_seqlen: int, last: int, keep: Callable[[int, torch.Tensor], bool]) -> None:
    """Run blocks 1..last on x [T, D] (pos, seq_id [T]: each token's position and sequence, from
    model.positions_from_cu; x is the caller's to give: it may be written in place); keep(i,
    hidden) for each layer's output (i = 1..last, and num_layers gets emb_layer_norm_after's
    output), True when it took the tensor."""
    n = model.num_layers
    T, D = x.shape
    layers = model.layers
    attend = _attention(model, T, seq_id, cu_seqlens, max_seqlen, x.dtype)
    if model.kernels == "quack":
        linear, project, ffn_in = _quack_steps(model, pos)
    else:
        linear, project, ffn_in = _triton_steps(model, pos, max_seqlen, x.device)
    h = K.layer_norm(x, layers[0].attn_norm)
    for i in range(last):
        layer = layers[i]
        H, Dh = layer.n_heads, layer.head_dim
        qkv, scale = project(layer, h)  # [T, 3D], q and k rotated
        q, k, v = qkv.view(T, 3, H, Dh).unbind(1)  # 3 x [T, H, Dh] views
        a = attend(q, k, v, scale)  # [T, H, Dh]
        x, h = _add_linear(linear, "out", x, a.reshape(T, D), layer.out_proj, layer.ffn_norm)
        f = ffn_in(layer, h)  # [T, F]
        nxt = layers[i + 1].attn_norm if i + 1 < last else (model.emb_layer_norm_after if i + 1 == n else None)
        x, h = _add_linear(linear, "fc2", x, f, layer.fc2, nxt)
        del f
        if i + 1 < n and keep(i + 1, x) and i + 1 < last:
            x = x.clone()  # the kept tensor stays as it is; later layers may add into x in place
    if last == n:
        keep(n, h)
