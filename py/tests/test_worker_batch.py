"""The worker's own checks on a batch it is handed (in process, CPU, the tiny model, a real ring)."""
from __future__ import annotations

import pytest
import torch
from conftest import CPU_TRITON

from embed_worker.errors import EmbedWorkerError
from embed_worker.worker import Worker, WorkerConfig


@pytest.fixture()
def worker(tiny, tmp_path):
    cfg = WorkerConfig(name="t0", model=str(tiny["hf"]), device="cpu", precision="fp32", layers=[-1],
                       include=["mean"], out_dtype="float32", max_tokens=256, ring_dir=str(tmp_path),
                       transport="shm", kernels="triton")
    w = Worker(cfg, channel=None)
    w.init_device()
    w.load_model()
    w.make_ring()
    yield w
    w.ring.unlink()


def _put(w: Worker, seqs: list[list[int]]) -> int:
    toks = [t for s in seqs for t in s]
    tokens, lens = w.ring.batch_input(0, len(toks), len(seqs))
    tokens.copy_(torch.tensor(toks, dtype=torch.uint8))
    lens.copy_(torch.tensor([len(s) for s in seqs], dtype=torch.int32))
    return len(toks)


def test_cpu_worker_runs_eager_whatever_kernels_were_asked(worker):
    assert worker.kernels == "eager" and worker.model.kernels == "eager"
    for want in ("auto", "quack", "triton", "compile", "eager"):
        assert worker.choose_kernels(want) == "eager"
    with pytest.raises(EmbedWorkerError, match="unknown kernels"):
        worker.choose_kernels("fast")


def test_batch_embeds_and_an_understated_max_length_is_refused(worker):
    seqs = [[0, 5, 6, 7, 2], [0, 8, 9, 10, 11, 12, 13, 2]]
    n = _put(worker, seqs)
    ok = worker.embed({"batch": 1, "slot": 0, "seqs": 2, "tokens": n, "maxLen": 8})
    assert ok["nonFinite"] == 0
    with pytest.raises(EmbedWorkerError, match="max length 7"):
        worker.embed({"batch": 2, "slot": 0, "seqs": 2, "tokens": n, "maxLen": 7})
    with pytest.raises(EmbedWorkerError, match="inconsistent sizes"):
        worker.embed({"batch": 3, "slot": 0, "seqs": 2, "tokens": n + 1, "maxLen": 8})


def _flaky_forward(worker, monkeypatch, fail_times: int) -> list[str]:
    calls: list[str] = []
    real = worker.model.forward

    def forward(*a, **k):
        calls.append(worker.model.kernels)
        if len(calls) <= fail_times:
            raise RuntimeError("kernel failed to compile")
        return real(*a, **k)
    monkeypatch.setattr(worker.model, "forward", forward)
    return calls


@CPU_TRITON  # the fallback's Triton kernels run on this CPU worker's tensors
def test_quack_failing_at_warmup_falls_back_to_triton(worker, monkeypatch):
    pytest.importorskip("triton")
    calls = _flaky_forward(worker, monkeypatch, 1)
    worker.kernels = "quack"  # as chosen on a Hopper GPU
    worker.warmup()
    assert calls == ["eager", "triton"]
    assert worker.kernels == "triton" and worker.model.kernels == "triton"


def test_other_warmup_failures_are_not_swallowed(worker, monkeypatch):
    _flaky_forward(worker, monkeypatch, 1)
    with pytest.raises(RuntimeError, match="failed to compile"):
        worker.warmup()


@pytest.mark.parametrize("why,want,got", [
    (None, "auto", "quack"), (None, "quack", "quack"), (None, "triton", "triton"),
    ("quack-kernels does not import", "auto", "triton"), ("quack-kernels does not import", "quack", "triton"),
])
def test_gpu_kernels_choice(worker, monkeypatch, capsys, why, want, got):
    """What a GPU worker runs for each request, with quack loadable or not (decision logic only:
    the device is a CUDA name, nothing runs on it)."""
    pytest.importorskip("triton")
    from embed_worker.gpu import epilogues
    monkeypatch.setattr(epilogues, "unavailable", lambda device, dtype: why)
    monkeypatch.setattr(worker, "device", torch.device("cuda", 0))
    assert worker.choose_kernels(want) == got
    err = capsys.readouterr().err
    if why:  # an explicit --kernels quack that cannot run warns; auto only says what it chose
        assert why in err
        assert ('"level": "warn"' in err) == (want == "quack")
    else:
        assert err == ""


@pytest.mark.parametrize("expected,want,got,imported", [
    (None, "auto", "quack", True),       # size unknown: as for a long run
    ("short", "auto", "triton", False),  # too short to repay quack's import: never imported
    ("long", "auto", "quack", True),
    ("short", "quack", "quack", True),   # an explicit choice is honoured whatever the size
])
def test_auto_kernels_leave_quack_unloaded_for_a_short_run(worker, monkeypatch, capsys, expected, want, got, imported):
    """"auto" skips quack (and its import, QUACK_IMPORT_S of start-up) when the orchestrator's
    token estimate puts the run's embedding under QUACK_IMPORT_S / QUACK_GAIN seconds per GPU."""
    pytest.importorskip("triton")
    from embed_worker.gpu import arrange, epilogues
    from embed_worker.worker import matrix_flops_per_token
    asked = []
    monkeypatch.setattr(epilogues, "unavailable", lambda device, dtype: asked.append(1))
    monkeypatch.setattr(worker, "device", torch.device("cuda", 0))
    flops = matrix_flops_per_token(worker.mcfg)
    pays = arrange.QUACK_IMPORT_S / arrange.QUACK_GAIN * arrange.GPU_FLOPS / flops  # tokens at which it pays
    import dataclasses
    worker.cfg = dataclasses.replace(worker.cfg, expected_tokens={None: None, "short": int(pays * 0.9), "long": int(pays * 1.1)}[expected])
    assert worker.choose_kernels(want) == got
    assert bool(asked) == imported
    err = capsys.readouterr().err
    assert ("this run is short" in err) == (expected == "short" and want == "auto")


def test_matrix_flops_per_token_counts_the_block_weights_twice():
    from embed_worker.esm2.registry import KNOWN
    from embed_worker.worker import matrix_flops_per_token
    cfg = KNOWN["esm2_t36_3B_UR50D"].cfg
    # 36 layers x 2 x (QKV + out: 4 x 2560^2, FC1 + FC2: 2 x 2560 x 10240) = 5.66 GFLOP a token
    assert matrix_flops_per_token(cfg) == 2 * 36 * (4 * 2560 ** 2 + 2 * 2560 * 10240)
    assert abs(matrix_flops_per_token(cfg) / 5.66e9 - 1) < 0.01


def test_long_attention_failing_at_warmup_is_turned_off_with_a_warning(worker, capsys):
    """FlashAttention-4 (long batches) is compiled at warm-up; if it fails there, the worker
    drops it (long batches take the varlen flash kernel) and says so, instead of failing later."""
    calls = []

    def broken(q, k, v, cu, max_seqlen, scale):
        calls.append((tuple(q.shape), cu.tolist(), max_seqlen))
        raise RuntimeError("no sm90 here")
    worker.model.long_attention = broken
    worker.warmup()
    assert calls == [((2048, worker.model.layers[0].n_heads, worker.model.layers[0].head_dim), [0, 1024, 2048], 1024)]
    assert worker.model.long_attention is None and "warm-up" in worker.model.long_attention_off
    err = capsys.readouterr().err
    assert "FlashAttention-4 failed at warm-up" in err and '"level": "warn"' in err
    assert "+fa4" not in worker.ready_message()["backend"]


def test_long_attention_that_works_is_named_in_ready(worker):
    from embed_worker.esm2.attention import _exact
    worker.model.long_attention = lambda q, k, v, cu, mx, scale: _exact(q, k, v, cu, scale)
    worker.warmup()
    assert worker.ready_message()["backend"].endswith("+fa4")


def test_warmup_compiles_every_aligned_attention_launch(worker, monkeypatch):
    """Before READY a GPU worker runs the aligned kernel once per launch of kernels.ALIGNED_LAUNCH
    (each row compiles its own kernel), on two sequences of a length that picks that row, so no
    batch of the run pays a compile (wiring only: the kernel is recorded, not run)."""
    pytest.importorskip("triton")
    from embed_worker.gpu import attention_kernels as AK
    seen = []

    def aligned(q, k, v, cu, scale=1.0, table=None, max_seqlen=None):
        seen.append((tuple(q.shape), cu.tolist(), max_seqlen, AK.aligned_launch(max_seqlen)))
        return q
    monkeypatch.setattr(AK, "aligned_attention", aligned)
    monkeypatch.setattr(worker, "dtype", torch.float16)  # as on a GPU
    worker.model.kernels = "triton"
    worker.warm_aligned_attention()
    h, dh = worker.model.layers[0].n_heads, worker.model.layers[0].head_dim
    assert [(s, c, m) for s, c, m, _ in seen] == [((2 * n, h, dh), [0, n, 2 * n], n) for n in AK.aligned_launch_lengths()]
    assert {launch for *_, launch in seen} == {row[1:] for row in AK.ALIGNED_LAUNCH}
