"""Epilogues for quack's GEMM, written in its @gemm_epilogue form:

  qkv_rope_bias  ESM-2's QKV: bias, then rotary on each adjacent column pair, with every
                 operand's kind pinned. (quack's own rope_posfreq_bias_epi infers the bias from
                 its shape, which is ambiguous — and refused — whenever a batch's token count
                 equals the 3D output width.)
  geglu_erf      DNABERT-S's gated projection: exact (erf) GELU of each pair's gate times its
                 up, stored at half the GEMM's width; the [T, 2F] product itself is never
                 stored. (quack's own "geglu" is the tanh approximation.)

Imports quack at module level: quack's compile workers re-import this module to find the
epilogue, so it must be a module global here. The angle math is quack's (in turns, float-float;
quack-kernels 0.6.5, pinned by scripts/setup and dev/quack-carry).
"""
from __future__ import annotations

from quack.epilogue.frontend import gemm_epilogue, pack, unpack
from quack.epilogue.ops import ColVecLoad, RowVecLoad
from quack.epilogue.rotary import _angle_turns, _sincos_turns, make_interleaved_inv_freq  # noqa: F401
from quack.activation import gelu_erf


@gemm_epilogue(ops={"pos": ColVecLoad("pos"), "freq": RowVecLoad("freq"), "bias": RowVecLoad("bias")},
               mode="acc_pair")
def qkv_rope_bias(acc, pos, freq, bias):
    """D = rotate(acc + bias) by angle pos * freq on each (2j, 2j+1) pair; zero freq = identity."""
    x1, x2 = unpack(acc + bias)
    s, c = _sincos_turns(*_angle_turns(pos, freq))
    return {"D": pack(x1 * c - x2 * s, x1 * s + x2 * c)}


@gemm_epilogue(outputs=("postact",), mode="acc_pair")
def geglu_erf(acc):
    """postact[:, j] = gelu_erf(acc[:, 2j]) * acc[:, 2j + 1] on the fp32 accumulator (the gated
    weight's rows interleaved gate, up, gate, up, ...; gpu/dnabert_s.pair_gate_up); postact is
    half the GEMM's width, rounded once to the output dtype."""
    gate, up = unpack(acc)
    return {"postact": gelu_erf(gate) * up}
