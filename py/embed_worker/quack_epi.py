"""ESM-2's QKV epilogue for quack's GEMM: bias, then rotary on each adjacent column pair, with
every operand's kind pinned. (quack's own rope_posfreq_bias_epi infers the bias from its shape,
which is ambiguous — and refused — whenever a batch's token count equals the 3D output width.)

Imports quack at module level: quack's compile workers re-import this module to find the
epilogue, so it must be a module global here. The angle math is quack's (in turns, float-float;
quack-kernels 0.6.5, pinned by scripts/setup and dev/quack-carry).
"""
from __future__ import annotations

from quack.activation import gelu_erf, gelu_tanh_approx
from quack.epilogue.frontend import gemm_epilogue, pack, unpack
from quack.epilogue.ops import ColVecLoad, RowVecLoad
from quack.epilogue.rotary import _angle_turns, _sincos_turns, make_interleaved_inv_freq  # noqa: F401


@gemm_epilogue(ops={"pos": ColVecLoad("pos"), "freq": RowVecLoad("freq"), "bias": RowVecLoad("bias")},
               mode="acc_pair")
def qkv_rope_bias(acc, pos, freq, bias):
    """D = rotate(acc + bias) by angle pos * freq on each (2j, 2j+1) pair; zero freq = identity."""
    x1, x2 = unpack(acc + bias)
    s, c = _sincos_turns(*_angle_turns(pos, freq))
    return {"D": pack(x1 * c - x2 * s, x1 * s + x2 * c)}


# Deferred LayerNorm (epilogues.DEFERRED_LN): the GEMM reads the residual stream x itself, with
# LayerNorm's gamma folded into the weight (W' = W diag(gamma)), and applies the rest per element:
# LN(x) Wᵀ + b = rstd * (x W'ᵀ) - rstd * mean * colsum(W') + (W beta + b)
#             = acc * ls - wg * lt + wb     (ls, lt per row from kernels.ln_stats; wg, wb per column)
def _ln_ops() -> dict:
    return {"ls": ColVecLoad("ls"), "lt": ColVecLoad("lt"), "wg": RowVecLoad("wg"), "wb": RowVecLoad("wb")}


@gemm_epilogue(ops={"pos": ColVecLoad("pos"), "freq": RowVecLoad("freq"), **_ln_ops()}, mode="acc_pair")
def qkv_rope_ln(acc, pos, freq, ls, lt, wg, wb):
    """qkv_rope_bias of LN(x) Wᵀ + b, from acc = x W'ᵀ."""
    x1, x2 = unpack(acc * ls - wg * lt + wb)
    s, c = _sincos_turns(*_angle_turns(pos, freq))
    return {"D": pack(x1 * c - x2 * s, x1 * s + x2 * c)}


@gemm_epilogue(ops=_ln_ops())
def fc1_ln_gelu_erf(acc, ls, lt, wg, wb):
    """erf GELU of LN(x) Wᵀ + b, from acc = x W'ᵀ."""
    return {"D": gelu_erf(acc * ls - wg * lt + wb)}


@gemm_epilogue(ops=_ln_ops())
def fc1_ln_gelu_tanh(acc, ls, lt, wg, wb):
    """tanh-approximated GELU (a test fault, model.set_activation) of LN(x) Wᵀ + b."""
    return {"D": gelu_tanh_approx(acc * ls - wg * lt + wb)}
