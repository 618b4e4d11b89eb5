"""ESM-2's layer GEMMs with their elementwise work fused into GEMM epilogues (quack-kernels'
CuTe-DSL Hopper GEMMs) against cuBLAS + the separate kernels fused.py runs today.

Per layer the block loop runs four GEMMs and, around them, an erf GELU pass over [T, 4D] and two
residual add + LayerNorm passes over [T, D]. quack's epilogues can take:
  fc1   gemm_act(h, W1ᵀ, bias, "gelu_erf")      GELU on the fp32 accumulator, one [T, 4D] store
  out   gemm_add(a, Woᵀ, C=x, bias)             residual + bias in the epilogue; LN alone after
  fc2   gemm_add(f, W2ᵀ, C=x, bias)             same
This measures each GEMM bare (mainloop parity with cuBLAS), each fused op against its unfused
cuBLAS form, one whole layer's GEMM+elementwise work back to back both ways, and the error of
each against an fp32 reference of the same fp16 inputs.

    python3 scripts/epilogue_sweep.py [--dims 2560,1280] [--m 65494] [--configs 128x192p,256x128c]

Configs: TILEMxTILEN then p (pingpong) or c (cooperative), optional @CMxCN cluster (default 2x1);
"default" is quack's default config, "tuned" its autotuner (every SM90 config, once per shape).
Prints one JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial

import torch
import torch.nn.functional as F

from cudatime import timed

sys.path.insert(0, "py")
import gemm_cases  # noqa: E402
from embed_worker import epilogues as E  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from gemm_cases import err  # noqa: E402


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="2560,1280")
    ap.add_argument("--m", type=int, default=65494)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--configs", default="default,128x192p,128x160p,256x128c,128x256c")
    a = ap.parse_args()
    t0 = time.time()
    from quack.gemm_interface import gemm_act, gemm_tuned
    emit(measurement="import", s=round(time.time() - t0, 1))
    dev, dt = torch.device("cuda"), torch.float16
    M = a.m
    for D in map(int, a.dims.split(",")):
        case = gemm_cases.layer(D, M, dev, dt)
        W, b, x, h, att, f, inputs, flops = (case.W, case.b, case.x, case.h, case.att, case.f, case.inputs,
                                             case.flops)
        norm = torch.nn.LayerNorm(D, device=dev, dtype=dt)

        # fp32 references of the fused ops, from the same fp16 inputs
        def ref(k):
            return inputs[k].float() @ W[k].float().t() + b[k].float()
        refs = {"fc1": F.gelu(ref("fc1")), "out": ref("out") + x.float(), "fc2": ref("fc2") + x.float()}

        for k in W:
            ms = timed(lambda k=k: F.linear(inputs[k], W[k], b[k]), a.iters)
            emit(D=D, op=k, impl="cublas", ms=round(ms, 4), tflops=round(flops[k] / ms / 1e9, 1))
        unfused = {
            "fc1": lambda: torch._C._nn.gelu_(F.linear(h, W["fc1"], b["fc1"])),
            "out": lambda: x + F.linear(att, W["out"], b["out"]),
            "fc2": lambda: x + F.linear(f, W["fc2"], b["fc2"]),
        }
        for k, fn in unfused.items():
            ms = timed(fn, a.iters)
            emit(D=D, op=f"{k}+epi", impl="cublas+kernel", ms=round(ms, 4), **err(fn(), refs[k]))
        ms = timed(lambda: K.add_layer_norm(x, att, norm), a.iters)
        emit(D=D, op="add+ln", impl="triton", ms=round(ms, 4))
        ms = timed(lambda: K.layer_norm(x, norm), a.iters)
        emit(D=D, op="ln", impl="triton", ms=round(ms, 4))

        def cublas_layer():
            qkv = F.linear(h, W["qkv"], b["qkv"])
            o = F.linear(att, W["out"], b["out"])
            x1, h1 = K.add_layer_norm(x, o, norm)
            ff = torch._C._nn.gelu_(F.linear(h1, W["fc1"], b["fc1"]))
            y = F.linear(ff, W["fc2"], b["fc2"])
            return K.add_layer_norm(x1, y, norm), qkv
        ms = timed(cublas_layer, a.iters)
        emit(D=D, op="layer", impl="cublas+kernels", ms=round(ms, 4))

        # QKV + rotary: cuBLAS + the Triton rotary pass vs one quack GEMM with rotary in its
        # epilogue on interleaved q/k rows (epilogues.py), against an fp64 rotation of the fp32
        # GEMM. Positions: packed sequences of 50 tokens.
        H = D // 64
        rope = gemm_cases.qkv_rope(case, 50)
        pos, inv_freq = rope.pos, rope.inv_freq
        cos, sin = [t.to(dev) for t in ((torch.arange(1024)[:, None] * inv_freq).cos(),
                                        (torch.arange(1024)[:, None] * inv_freq).sin())]
        ms = timed(lambda: K.rotary_(F.linear(h, W["qkv"], b["qkv"]), pos, cos, sin, H, 1.0), a.iters)
        emit(D=D, op="qkv+rotary", impl="cublas+triton", ms=round(ms, 4))
        try:
            lin, freq, posf = rope.lin, rope.freq, rope.posf
            t1 = time.time()
            got = E.qkv_rope(h, lin.weight, lin.bias, posf, freq)
            torch.cuda.synchronize()
            emit(D=D, measurement="compile", config="qkv_rope", s=round(time.time() - t1, 1))
            ms = timed(lambda: E.qkv_rope(h, lin.weight, lin.bias, posf, freq), a.iters)
            emit(D=D, op="qkv+rotary", impl="quack", ms=round(ms, 4), **err(got, rope.want))
        except Exception as e:
            emit(D=D, op="qkv+rotary", impl="quack", error=f"{type(e).__name__}: {str(e)[:400]}")

        Wt = {k: w.t() for k, w in W.items()}  # (K, N) views of the checkpoint's [out, in] weights
        for cs in a.configs.split(","):
            cfg = None if cs in ("default", "tuned") else E.gemm_config(cs)
            kw = {"tuned": cs == "tuned", "config": cfg}

            def gemm(A, B, bias, tuned, config):
                """A @ B + bias with quack's kernel and this config (None: quack's default)."""
                out = torch.empty(A.shape[0], B.shape[1], dtype=A.dtype, device=A.device)
                (gemm_tuned if tuned else partial(gemm_tuned.fn, config=config))(A, B, out, None, bias=bias)
                return out

            def gemm_add(A, B, C, bias, tuned, config):
                """A @ B + C + bias, C and bias in the epilogue."""
                out = torch.empty_like(C)
                (gemm_tuned if tuned else partial(gemm_tuned.fn, config=config))(A, B, out, C, bias=bias)
                return out
            try:
                t1 = time.time()
                fused = {
                    "fc1": lambda: gemm_act(h, Wt["fc1"], bias=b["fc1"], activation="gelu_erf",
                                            store_preact=False, **kw)[1],
                    "out": lambda: gemm_add(att, Wt["out"], x, bias=b["out"], **kw),
                    "fc2": lambda: gemm_add(f, Wt["fc2"], x, bias=b["fc2"], **kw),
                }
                for k, fn in fused.items():
                    e = err(fn(), refs[k])
                    emit(D=D, op=f"{k}+epi", impl="quack", config=cs, **e)
                torch.cuda.synchronize()
                emit(D=D, measurement="compile", config=cs, s=round(time.time() - t1, 1))
                for k in W:
                    bare = gemm(inputs[k], Wt[k], bias=b[k], **kw)
                    e = err(bare, ref(k))
                    ms = timed(lambda k=k: gemm(inputs[k], Wt[k], bias=b[k], **kw), a.iters)
                    emit(D=D, op=k, impl="quack", config=cs, ms=round(ms, 4),
                         tflops=round(flops[k] / ms / 1e9, 1), **e)
                for k, fn in fused.items():
                    ms = timed(fn, a.iters)
                    emit(D=D, op=f"{k}+epi", impl="quack", config=cs, ms=round(ms, 4))

                def quack_layer():
                    qkv = gemm(h, Wt["qkv"], bias=b["qkv"], **kw)
                    x1 = gemm_add(att, Wt["out"], x, bias=b["out"], **kw)
                    h1 = K.layer_norm(x1, norm)
                    ff = gemm_act(h1, Wt["fc1"], bias=b["fc1"], activation="gelu_erf", store_preact=False, **kw)[1]
                    x2 = gemm_add(ff, Wt["fc2"], x1, bias=b["fc2"], **kw)
                    return (x2, K.layer_norm(x2, norm)), qkv
                ms = timed(quack_layer, a.iters)
                emit(D=D, op="layer", impl="quack", config=cs, ms=round(ms, 4))
            except Exception as e:  # one config failing must not lose the others' numbers
                emit(D=D, config=cs, error=f"{type(e).__name__}: {str(e)[:400]}")
        x = h = att = f = W = Wt = inputs = refs = case = rope = None  # free this width's tensors
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
