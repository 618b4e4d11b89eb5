"""ESM-2's QKV epilogue for quack's GEMM: bias, then rotary on each adjacent column pair, with
every operand's kind pinned. (quack's own rope_posfreq_bias_epi infers the bias from its shape,
which is ambiguous — and refused — whenever a batch's token count equals the 3D output width.)

Imports quack at module level: quack's compile workers re-import this module to find the
epilogue, so it must be a module global here. The angle math is quack's (in turns, float-float;
quack-kernels 0.6.5, pinned by scripts/setup and dev/quack-carry).
"""
from __future__ import annotations

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
