"""The CUDA attention backend is chosen once: flash-attn (FlashAttention-2) when it imports, else
torch's varlen kernel. flash-attn is not installable here or on the GPU image, so a stand-in with
FlashAttention-2's documented signature (flash_attn_varlen_func(q, k, v, cu_seqlens_q,
cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None, causal=False, ...))
checks the choice and the call: every argument binds to that signature and means what it should."""
import inspect
import sys
import types

import pytest
import torch

from embed_worker.esm2 import attention


def _fa2_signature(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                   softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                   deterministic=False, return_attn_probs=False, block_table=None):
    """FlashAttention-2's flash_attn_varlen_func, as its package documents it (no body)."""


@pytest.fixture
def fake_flash_attn(monkeypatch):
    calls = []

    def varlen(*args, **kwargs):
        bound = inspect.signature(_fa2_signature).bind(*args, **kwargs)  # TypeError if the call does not fit
        bound.apply_defaults()
        a = bound.arguments
        calls.append(a)
        return attention._exact(a["q"], a["k"], a["v"], a["cu_seqlens_q"].long(), a["softmax_scale"])

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=varlen))
    attention._cuda_kernels.cache_clear()
    yield calls
    attention._cuda_kernels.cache_clear()


def test_flash_attn_is_chosen_first_and_called_as_documented(fake_flash_attn, monkeypatch):
    assert attention._cuda_kernels()[0] == "flash-attn"
    assert attention.CUDA_BACKEND == "flash-attn"
    monkeypatch.setattr(attention, "backend_for", lambda device, dtype=None: "flash-attn")  # CPU tensors, CUDA route
    torch.manual_seed(0)
    lens = [5, 1, 9]
    cu = torch.tensor([0, 5, 6, 15], dtype=torch.int64)
    q, k, v = (torch.randn(15, 4, 8, dtype=torch.float64) for _ in range(3))
    out = attention.varlen_attention(q, k, v, cu, max(lens), scale=0.125)
    (call,) = fake_flash_attn
    assert call["cu_seqlens_q"].dtype == torch.int32 and torch.equal(call["cu_seqlens_q"], call["cu_seqlens_k"])
    assert call["cu_seqlens_q"].tolist() == [0, 5, 6, 15]
    assert (call["max_seqlen_q"], call["max_seqlen_k"]) == (9, 9)
    assert (call["dropout_p"], call["softmax_scale"], call["causal"]) == (0.0, 0.125, False)
    assert call["window_size"] == (-1, -1) and call["alibi_slopes"] is None
    torch.testing.assert_close(out, attention._exact(q, k, v, cu, 0.125))


def test_a_broken_flash_attn_falls_back_to_torch_varlen(monkeypatch):
    class Broken(types.ModuleType):
        def __getattr__(self, name):
            if name == "flash_attn_varlen_func":
                raise ImportError("undefined symbol: _ZN3c10... (a flash-attn built for another torch)")
            raise AttributeError(name)

    monkeypatch.setitem(sys.modules, "flash_attn", Broken("flash_attn"))
    attention._cuda_kernels.cache_clear()
    try:
        assert attention._cuda_kernels()[0] == "torch-varlen"
    finally:
        attention._cuda_kernels.cache_clear()
