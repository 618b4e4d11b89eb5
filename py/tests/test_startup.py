"""Worker start-up: phase timing (startup.py), and nothing slow imported on the way."""
from __future__ import annotations

import re
import sys
import time

from embed_worker import startup


def test_phases_time_each_step_from_the_end_of_the_last():
    p = startup.Phases()
    time.sleep(0.02)
    p.lap("torch")
    p.lap("device")
    assert list(p.ms) == ["torch", "device"]
    assert p.ms["torch"] >= 15 and 0 <= p.ms["device"] < p.ms["torch"]
    assert re.fullmatch(r"torch \d+\.\d s, device \d+\.\d s", p.line())  # one decimal; a loaded machine sleeps longer


def test_a_cpu_worker_stays_off_torch_dynamo(tiny):
    """A CPU worker's path (load, forward, attention backend) never imports torch._dynamo,
    seconds of every CPU worker's start-up: the loader builds ESM2 on the meta device, where
    random init (nn.init.normal_) would import it, and torch.nn.attention.varlen imports it, so
    attention.py imports that only for CUDA. Checked in a fresh interpreter."""
    import subprocess
    code = ("import sys, torch\n"
            "from embed_worker.esm2 import attention\nfrom embed_worker import worker\n"
            "from embed_worker.esm2.weights import load_model\n"
            f"m = load_model({str(tiny['fair-esm'])!r}, 'cpu', torch.float32)[0]\n"
            "m(torch.tensor([0, 5, 6, 2, 0, 7, 2]), torch.tensor([0, 4, 7], dtype=torch.int32), 4, [1])\n"
            "assert attention.backend_for('cpu') == 'exact'\n"
            "print('torch._dynamo' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_a_dnabert_s_load_stays_off_torch_dynamo(tmp_path):
    """The DNABERT-S loader builds the model on the meta device too: its embeddings' random init
    there would import torch._dynamo (1.2 s of the load). Checked in a fresh interpreter."""
    import subprocess
    from embed_worker.dnabert_s import testmodel as T
    from embed_worker.dnabert_s.config import DNABERTConfig
    cfg = DNABERTConfig(hidden_size=64, num_layers=1, num_heads=4, intermediate_size=96, vocab_size=4096)
    folder = T.write_folder(tmp_path / "m", cfg)
    code = ("import sys, torch\nfrom embed_worker import dnabert_run\n"
            f"dnabert_run.load({str(folder)!r}, torch.device('cpu'), torch.float32, 'auto')\n"
            "print('torch._dynamo' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_dnabert_s_random_init_off_the_meta_device_is_unchanged():
    import torch
    from embed_worker.dnabert_s import model as M
    from embed_worker.dnabert_s.config import DNABERTConfig
    cfg = DNABERTConfig(hidden_size=64, num_layers=1, num_heads=4, intermediate_size=96, vocab_size=4096)
    torch.manual_seed(3)
    ours = M.DNABERT(cfg)
    torch.manual_seed(3)
    ref = torch.nn.Embedding(cfg.vocab_size, cfg.hidden_size).weight
    assert torch.equal(ours.word_embeddings.weight, ref)
    assert ours.token_type_embeddings.weight.std() > 0.5  # drawn, not left empty


def test_random_init_off_the_meta_device_is_unchanged():
    """Benchmarks and tuning scripts build random-weight models: the embedding still draws
    nn.Embedding's own init (normal, padding row zero) from the same random stream."""
    import torch
    from embed_worker.esm2 import model as M
    from embed_worker.esm2.registry import KNOWN
    cfg = next(iter(KNOWN.values())).cfg
    torch.manual_seed(3)
    ours = M.ESM2(cfg).embed_tokens.weight
    torch.manual_seed(3)
    ref = torch.nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=M.PAD_IDX).weight
    assert torch.equal(ours, ref)
    assert ours[M.PAD_IDX].abs().sum() == 0
