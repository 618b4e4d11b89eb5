"""upload.py: a checkpoint's tensors on the device in the model's dtype, bit-equal to `.to`.

The GPU test runs where CUDA is (the device machines: `python3 -m pytest py/tests/test_upload.py`);
it cuts the staging chunk small so that tensors span several chunks and threads, and checks every
value against `tensor.to(device, dtype)`. A planted bug (a chunk copied one element short) must
fail it."""
from __future__ import annotations

import pytest
import torch

from embed_worker import upload as U


def state(seed=0):
    g = torch.Generator().manual_seed(seed)
    big = torch.randn(1000, 37, generator=g) * 1e3  # spans chunks; values that round in fp16
    return {
        "big": big,
        "odd": torch.randn(12345, generator=g),
        "tiny": torch.randn(3, generator=g),
        "empty": torch.empty(0, 5),
        "strided": big.t(),  # not contiguous: the plain path
        "ints": torch.arange(77),
        "half": torch.randn(999, generator=g).half(),
    }


def test_cpu_is_plain_to():
    s = state()
    got = U.upload(s, torch.device("cpu"), torch.float16)
    for k, v in s.items():
        want = v.to(torch.float16) if v.is_floating_point() else v
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def check_cuda(monkeypatch, threads):
    monkeypatch.setattr(U, "CHUNK_BYTES", 4096)  # many chunks per tensor, chunk ends mid-row
    dev = torch.device("cuda")
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        s = state()
        got = U.upload(s, dev, dtype, threads=threads)
        assert set(got) == set(s)
        for k, v in s.items():
            want = v.to(device=dev, dtype=dtype if v.is_floating_point() else v.dtype)
            assert got[k].device.type == "cuda" and got[k].dtype == want.dtype and got[k].shape == want.shape, k
            assert torch.equal(got[k], want), (k, dtype)


@needs_cuda
@pytest.mark.parametrize("threads", [1, 3, 8])
def test_cuda_equals_to(monkeypatch, threads):
    check_cuda(monkeypatch, threads)


@needs_cuda
def test_cuda_under_inference_mode(monkeypatch):
    """The worker loads under torch.inference_mode (thread-local): the threads write the caller's
    inference tensors in the same mode."""
    with torch.inference_mode():
        check_cuda(monkeypatch, 4)


@needs_cuda
def test_cuda_check_fails_on_a_short_chunk(monkeypatch):
    """The check above can fail: a chunk copied one element short leaves a hole it finds."""
    real = torch.Tensor.copy_
    calls = {"n": 0}

    def short(self, src, non_blocking=False):
        if self.device.type == "cuda" and src.device.type == "cuda" and self.numel() > 1:
            calls["n"] += 1
            if calls["n"] == 5:  # the fifth cast on the GPU loses its last element
                return real(self[:-1], src[:-1], non_blocking)
        return real(self, src, non_blocking)

    monkeypatch.setattr(torch.Tensor, "copy_", short)
    with pytest.raises(AssertionError):
        check_cuda(monkeypatch, 1)
