"""Epilogue variants for scripts/ln_epilogue_probe.py: the product's QKV and FC1 epilogues with one
operand kind added at a time (a row scale; two column vectors), to find which part of deferred
LayerNorm's epilogue (quack_epi.qkv_rope_ln, fc1_ln_gelu_erf) costs. Module globals, as quack's
compile workers re-import the module that defines an epilogue. Needs quack (scripts/quack-env)."""
from __future__ import annotations

from quack.activation import gelu_erf
from quack.epilogue.frontend import gemm_epilogue, pack, unpack
from quack.epilogue.ops import ColVecLoad, RowVecLoad

from embed_worker.quack_epi import _angle_turns, _sincos_turns


def _rotate(y, pos, freq):
    x1, x2 = unpack(y)
    s, c = _sincos_turns(*_angle_turns(pos, freq))
    return {"D": pack(x1 * c - x2 * s, x1 * s + x2 * c)}


@gemm_epilogue(ops={"bias": RowVecLoad("bias")}, mode="acc_pair")
def qkv_bias(acc, bias):
    """QKV with its bias and no rotary: what the rotary costs."""
    x1, x2 = unpack(acc + bias)
    return {"D": pack(x1, x2)}


@gemm_epilogue(ops={"pos": ColVecLoad("pos"), "freq": RowVecLoad("freq"), "ls": ColVecLoad("ls"),
                    "wb": RowVecLoad("wb")}, mode="acc_pair")
def qkv_rope_rowscale(acc, pos, freq, ls, wb):
    """QKV + rotary of acc * ls + wb: one row vector more than the product."""
    return _rotate(acc * ls + wb, pos, freq)


@gemm_epilogue(ops={"pos": ColVecLoad("pos"), "freq": RowVecLoad("freq"), "wg": RowVecLoad("wg"),
                    "wb": RowVecLoad("wb")}, mode="acc_pair")
def qkv_rope_cols(acc, pos, freq, wg, wb):
    """QKV + rotary of acc - wg + wb: one column vector more than the product."""
    return _rotate(acc - wg + wb, pos, freq)


@gemm_epilogue(ops={"bias": RowVecLoad("bias")})
def fc1_gelu(acc, bias):
    """The product's FC1 epilogue written through the epilogue frontend (the product calls
    quack's gemm_act)."""
    return {"D": gelu_erf(acc + bias)}


@gemm_epilogue(ops={"ls": ColVecLoad("ls"), "wb": RowVecLoad("wb")})
def fc1_gelu_rowscale(acc, ls, wb):
    """GELU(acc * ls + wb): one row vector more."""
    return {"D": gelu_erf(acc * ls + wb)}


@gemm_epilogue(ops={"wg": RowVecLoad("wg"), "wb": RowVecLoad("wb")})
def fc1_gelu_cols(acc, wg, wb):
    """GELU(acc - wg + wb): one column vector more."""
    return {"D": gelu_erf(acc - wg + wb)}
