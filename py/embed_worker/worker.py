"""The worker process: one per device, started by the orchestrator with `python -m embed_worker`.

Lifecycle: init_device -> load_model -> make ring -> warmup -> READY -> embed* -> shutdown.
Failures go back as `error` messages ({name, message, hint}), never as pickled exceptions.
The whole life runs under torch.inference_mode().
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass

from . import log
from .wire.channel import Channel
from .wire.datasock import DataChannelError, default_transport
from .errors import EmbedWorkerError
from .lifeline import bind_to_parent
from .threads import choose_threads, omp_env, read_grant
from .esm2.registry import absolute_layer
from .startup import Phases
from .budget import auto_budget
from .faults import ESM2_FAULTS
from .wire import protocol as P

@dataclass(frozen=True)
class WorkerConfig:
    name: str
    model: str
    device: str            # "cpu" or "cuda" (the one visible device)
    precision: str         # fp32 | fp16 | bf16
    layers: list[int]      # fair-esm style; negatives count from the end
    include: list[str]     # mean | bos | residues
    out_dtype: str         # float32 | float16
    max_tokens: int | None  # None = auto
    slots: int = 2
    ring_dir: str | None = None
    threads: int | None = None
    transport: str = "shm"  # shm | socket (the orchestrator decides; see protocol.py)
    fault: str | None = None  # test hook, see FAULTS
    kernels: str = "eager"  # auto | quack | triton | compile | eager: what runs the blocks (GPU; CPU is always eager)
    download: bool = False  # fetch a released checkpoint missing from every local cache
    max_len: int | None = None  # the longest sequence the run can send, BOS/EOS included (None: unknown)
    family: str = "esm2"  # esm2 | dnabert-s: what the orchestrator expects the model to be (wire FRAMING)
    expected_tokens: int | None = None  # the orchestrator's estimate of this worker's tokens (None: unknown)

    @staticmethod
    def from_env() -> "WorkerConfig":
        raw = os.environ.get("EMBED_WORKER_CONFIG")
        if not raw:
            raise EmbedWorkerError("EMBED_WORKER_CONFIG is not set", "start workers through embed")
        d = json.loads(raw)
        return WorkerConfig(name=d["name"], model=d["model"], device=d["device"], precision=d["precision"],
                            layers=list(d["layers"]), include=list(d["include"]), out_dtype=d["outDtype"],
                            max_tokens=d.get("maxTokens"), slots=d.get("slots", 2),
                            ring_dir=d.get("ringDir"), threads=d.get("threads"),
                            transport=d.get("transport") or default_transport(),
                            fault=d.get("fault"), kernels=d.get("kernels", "eager"),
                            download=bool(d.get("download", False)), max_len=d.get("maxLen"),
                            family=d.get("family", "esm2"), expected_tokens=d.get("expectedTokens"))


def matrix_flops_per_token(cfg) -> float:
    """2 x the block's weights per token (QKV, out, FC1, FC2: 2 x (4 D^2 + 2 D F)) over all layers:
    what the kernel choice's run-length estimate counts (attention's L-dependent part aside)."""
    d, f = cfg.embed_dim, cfg.ffn_dim
    return 2.0 * cfg.num_layers * (4 * d * d + 2 * d * f)


FAULTS = ESM2_FAULTS  # EMBED_FAULT's test-only bugs for ESM-2 (faults.py)


def resolve_layers(layers: list[int], num_layers: int) -> list[int]:
    """fair-esm's rule: layer i < 0 means num_layers + 1 + i; 0 is the embedding output."""
    out = []
    for i in layers:
        j = absolute_layer(i, num_layers)
        if not 0 <= j <= num_layers:
            raise EmbedWorkerError(f"layer {i} is out of range for a {num_layers}-layer model",
                                   f"use 0..{num_layers}, or -1 for the last layer", name="BadOptions")
        if j not in out:
            out.append(j)
    return out


class Worker:
    def __init__(self, cfg: WorkerConfig, channel: Channel) -> None:
        self.cfg = cfg
        self.ch = channel
        self.batches = 0
        self.tokens = 0
        self.phases = Phases()  # start-up, phase by phase (main and load_model lap it)

    # -- lifecycle ---------------------------------------------------------------------------------
    def init_device(self):
        import torch
        self.torch = torch
        if self.cfg.device == "cpu":
            self.set_threads(torch)
            self.device = torch.device("cpu")
        else:
            if not torch.cuda.is_available():
                raise EmbedWorkerError("CUDA is not available in this worker",
                                       "check `embed doctor`, or run with --devices cpu", name="DeviceUnavailable")
            self.device = torch.device("cuda", 0)
            torch.cuda.set_device(self.device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.cfg.precision]

    def set_threads(self, torch) -> None:
        """Threads from the CPUs granted (threads.py), not every core visible; --threads overrides.
        One inter-op thread: the worker runs one forward at a time."""
        granted, why = read_grant()
        n = choose_threads(self.cfg.threads, granted, os.cpu_count() or 1)
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work already ran (an embedding host)
            pass
        self.threads = n
        log.debug(f"{n} CPU thread(s)", source="--threads" if self.cfg.threads else why, granted=granted,
                 visible=os.cpu_count(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))

    def load_model(self):
        from . import dnabert_run
        dnabert_run.check_family(self.cfg.family, self.cfg.model)
        if self.cfg.family == dnabert_run.FAMILY:
            return dnabert_run.load_into(self, resolve_layers)
        from .esm2.weights import load_model
        from .esm2 import model as M
        self.M = M
        self.model, self.mcfg, self.resolved = load_model(self.cfg.model, self.device, self.dtype,
                                                          allow_download=self.cfg.download, lap=self.phases.lap)
        self.phases.lap("load")
        self.layers = resolve_layers(self.cfg.layers, self.mcfg.num_layers)
        self.kernels = self.choose_kernels(self.cfg.kernels)
        if self.device.type == "cuda":
            self.phases.lap("kernel-libs")  # importing what the choice needs (quack: the CuTe DSL)
        self.arrange(self.kernels, longest=self.cfg.max_len)
        self.phases.lap("kernels")
        self.apply_fault()
        self.max_tokens = self.cfg.max_tokens or auto_budget(self.torch, self.model, self.mcfg, self.device)
        self.max_seqs = max(1, self.max_tokens // 3)

    def choose_kernels(self, want: str) -> str:
        """The arrangement this worker can run. CPU workers always run eager (the exact CPU
        attention loops over sequences, so compiling would recompile per length, and Triton
        needs a GPU). On a GPU, gpu.arrange.gpu_kernels decides: "auto" takes the fastest that works
        there; an explicit choice that cannot run falls back the same way, with a warning."""
        if want not in ("auto", "quack", "triton", "compile", "eager"):
            raise EmbedWorkerError(f"unknown kernels {want!r}", "use auto, quack, triton, compile or eager")
        if self.device.type != "cuda":
            if want not in ("auto", "eager"):
                log.warn(f"--kernels {want} applies to GPU workers only; running eager on the CPU")
            return "eager"
        from .gpu.arrange import gpu_kernels
        got, notes = gpu_kernels(want, self.device, self.dtype, expected_tokens=self.cfg.expected_tokens,
                                 flops_per_token=matrix_flops_per_token(self.mcfg))
        log.notes(notes)
        return got

    def arrange(self, kind: str, longest: int | None = None) -> None:
        """Apply the GPU arrangement `kind` to the loaded model (gpu/arrange.py; "eager" is the
        reference model as loaded)."""
        from .gpu.arrange import arrange
        arrange(self.model, kind, longest=longest)

    def apply_fault(self):
        fault = self.cfg.fault
        if not fault:
            return
        if fault not in FAULTS:
            raise EmbedWorkerError(f"unknown fault {fault!r}", f"one of {', '.join(FAULTS)}", name="BadOptions")
        log.warn("FAULT INJECTED: results are wrong on purpose", fault=fault, effect=FAULTS[fault])
        if fault == "no-dropout-scale":
            # The forward multiplies by 0.88 (no masks); pre-dividing the table undoes it.
            self.model.embed_tokens.weight.data /= 1 - self.M.MASK_RATIO_TRAIN
        elif fault == "tanh-gelu":
            self.model.set_activation("tanh")

    def pool_mean(self, h, cu, pool):
        if self.cfg.fault != "eos-in-mean":
            return pool.mean(h)
        n = (cu[1:] - cu[:-1] - 2).clamp_min(0).unsqueeze(1).float()  # residues per sequence
        eos = h[cu[1:].long() - 1].float()
        return (pool.mean(h) * n + eos) / (n + 1)

    def make_ring(self):
        from .wire.transport import make_ring
        layout = P.RingLayout(
            slots=self.cfg.slots,
            in_bytes=P.input_bytes(self.max_tokens, self.max_seqs, self.token_bytes()),
            token_bytes=self.token_bytes(),
            out_bytes=P.output_bytes(self.max_tokens, self.max_seqs, self.layers, self.cfg.include,
                                     self.mcfg.embed_dim, self.cfg.out_dtype))
        self.ring = make_ring(self.cfg.transport, self.cfg.ring_dir, self.cfg.name, layout)

    def token_bytes(self) -> int:
        return P.FRAMING[self.cfg.family]["bytes"]

    def warmup(self):
        """One tiny forward before READY (it also compiles the quack kernels). If the quack
        GEMMs fail to compile or run for this model, the worker falls back to "triton" and
        says so, rather than failing the run."""
        t = self.torch
        if self.cfg.family != "esm2":
            self.M.warmup(self.model, self.device, self.layers)
            return t.cuda.synchronize() if self.device.type == "cuda" else None
        tokens = t.tensor([0, 5, 6, 7, 2, 0, 8, 2], device=self.device)
        cu = t.tensor([0, 5, 8], dtype=t.int32, device=self.device)
        try:
            self.model(tokens, cu, 5, self.layers)
        except Exception as e:
            if self.kernels != "quack":
                raise
            log.warn(f"quack's GEMMs failed at warm-up ({type(e).__name__}: {str(e)[:300]}); "
                     "running --kernels triton (cuBLAS)", hint="report it with `embed doctor` output")
            self.kernels = "triton"
            self.arrange("triton")
            self.model(tokens, cu, 5, self.layers)
        self.warm_aligned_attention()
        self.warm_long_attention()
        if self.device.type == "cuda":
            t.cuda.synchronize()

    def warm_aligned_attention(self):
        """Compile the sequence-aligned attention kernel before READY (gpu.arrange)."""
        from .gpu.arrange import warm_aligned_attention
        warm_aligned_attention(self.model, self.device, self.dtype)

    def warm_long_attention(self):
        """Compile FlashAttention-4 (batches of long sequences only) before READY too; if it
        fails, those batches take the varlen flash kernel instead."""
        m = self.model
        if m.long_attention is None:
            if m.kernels == "quack" and m.long_attention_off:
                log.info(f"FlashAttention-4 off: {m.long_attention_off}; long sequences use the varlen flash kernel",
                         hint="pip install flash-attn-4==4.0.0b36 (Hopper; 20-30% faster attention past 512 tokens)")
            return
        from .gpu.arrange import warm_long_attention
        failed = warm_long_attention(m, self.device, self.dtype)
        if failed:
            log.warn(f"FlashAttention-4 failed at warm-up ({failed}); long sequences use the varlen flash kernel",
                     hint="report it with `embed doctor` output")

    def ready_message(self) -> dict:
        from .esm2 import attention
        t = self.torch
        if self.cfg.family == "esm2":
            backend = attention.backend_for(self.device, self.dtype) + ("+fa4" if self.model.long_attention else "")
        else:
            backend = self.M.backend(self.device, self.kernels)
        return P.ready(family=self.cfg.family,
            pid=os.getpid(), device=str(self.device) if self.device.type == "cpu" else
            f"cuda ({t.cuda.get_device_name(self.device)})",
            backend=backend, kernels=self.kernels, precision=self.cfg.precision,
            model={"name": self.mcfg.name, "path": self.resolved.path, "format": self.resolved.format,
                   "numLayers": self.mcfg.num_layers, "dim": self.mcfg.embed_dim,
                   "heads": self.mcfg.attention_heads},
            layers=self.layers, include=self.cfg.include, out_dtype=self.cfg.out_dtype,
            max_tokens=self.max_tokens, max_seqs=self.max_seqs, ring_path=self.ring.path, ring=self.ring.layout,
            transport=self.ring.transport,
            versions={"python": sys.version.split()[0], "torch": t.__version__}, load_ms=self.phases.ms["load"], startup_ms=self.phases.ms)

    # -- work ----------------------------------------------------------------------------------------
    def embed(self, msg: dict) -> dict:
        t = self.torch
        t0 = time.perf_counter()
        batch, slot, n_seqs, n_tokens, max_len = (int(msg[k]) for k in ("batch", "slot", "seqs", "tokens", "maxLen"))
        self.ring.receive_input(batch, slot, n_tokens, n_seqs)
        tok_view, lens = self.ring.batch_input(slot, n_tokens, n_seqs)
        # max_len bounds every position (attention kernels, rotary table): it must not understate.
        if (int(lens.sum()) != n_tokens or n_seqs > self.max_seqs or n_tokens > self.max_tokens
                or (n_seqs and int(lens.max()) > max_len)):
            raise EmbedWorkerError(f"batch {batch}: inconsistent sizes ({n_seqs} seqs, {n_tokens} tokens, "
                                   f"max length {max_len})",
                                   "this is a bug in the orchestrator; please report it", name="BadFrame")
        cu = t.zeros(n_seqs + 1, dtype=t.int32)
        t.cumsum(lens, 0, out=cu[1:])
        tokens = self.ring.token_ids(tok_view.to(self.device, non_blocking=True))
        cu = cu.to(self.device, non_blocking=True)
        hidden = self.model(tokens, cu, max_len, self.layers)
        blocks = P.output_blocks(n_seqs, n_tokens, self.layers, self.cfg.include, self.mcfg.embed_dim,
                                 self.cfg.out_dtype)
        pool = self.M.Pooling(cu, n_tokens, self.device)
        non_finite = t.zeros((), dtype=t.int64, device=self.device)
        for b in blocks:
            h = hidden[b["layer"]]
            if b["kind"] == "mean":
                x = self.pool_mean(h, cu, pool)
            elif b["kind"] == "bos":
                x = pool.bos(h)
            else:
                x = pool.residues(h)
            non_finite += (~t.isfinite(x)).sum()
            self.ring.output_view(slot, b["offset"], b["rows"], b["dim"], b["dtype"]).copy_(x)
        non_finite = int(non_finite)
        self.ring.send_output(batch, slot, P.output_used(blocks))
        self.batches += 1
        self.tokens += n_tokens
        return P.result(batch=batch, slot=slot, outputs=blocks, ms=round((time.perf_counter() - t0) * 1000, 3),
                        non_finite=non_finite)

    def stats(self, msg: dict) -> dict:
        return P.pong(int(msg.get("seq", 0)), {"batches": self.batches, "tokens": self.tokens})

    def serve(self) -> int:
        while True:
            msg = self.ch.recv()
            kind = msg.get("type")
            if kind == "shutdown":
                return 0
            if kind == "embed":
                try:
                    self.ch.send(self.embed(msg))
                except DataChannelError as e:  # the data stream is out of step or gone: fatal
                    log.log("error", "data channel failed", error=str(e))
                    self.ch.send(P.error(wire_error(e)))
                    return 1
                except Exception as e:  # a failed batch is reported; the orchestrator decides
                    if "OutOfMemory" in type(e).__name__ and self.device.type == "cuda":
                        # Free what the failed batch held, so the split halves that follow fit.
                        self.torch.cuda.empty_cache()
                    self.ch.send(P.error(wire_error(e), batch=int(msg.get("batch", -1))))
            else:
                self.ch.send(P.error({"name": "BadFrame", "message": f"unknown message type {kind!r}",
                                      "hint": "orchestrator and worker versions differ"}))


def wire_error(e: BaseException) -> dict:
    if isinstance(e, EmbedWorkerError):
        return e.to_wire()
    name = type(e).__name__
    hint = "see the worker log above for the traceback"
    if isinstance(e, ModuleNotFoundError):
        # Most often torch: the Python found (EMBED_PYTHON, a set-up venv, else python3) lacks it.
        return {"name": name, "message": f"{e} in {sys.executable} (Python {sys.version.split()[0]}), the Python embed's workers run",
                "hint": "run `embed setup` once (it installs torch and the worker's requirements for embed; "
                        "in a checkout scripts/setup does the same), or set EMBED_PYTHON to a Python that has them"}
    if "OutOfMemory" in name:
        hint = "lower --max-tokens"
    return {"name": name, "message": str(e) or name, "hint": hint, "traceback": traceback.format_exc(limit=8)}


def ignore_interrupts() -> None:
    """The orchestrator owns interruption: a terminal's Ctrl-C (SIGINT) reaches the whole process
    group, and a hung-up terminal sends SIGHUP to it (the orchestrator drains on SIGHUP); a worker
    that died of either would drop the batches in flight that the orchestrator is finishing and
    committing. The worker stops when told (`shutdown`), when its channel closes, or by
    SIGTERM/SIGKILL from the orchestrator."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def main() -> int:
    bind_to_parent()  # first: a worker must not outlive its orchestrator, even mid-start-up
    ignore_interrupts()
    log.redirect_stdout()
    ch = Channel()
    worker = None
    try:
        cfg = WorkerConfig.from_env()
        if cfg.device == "cpu":  # before torch loads OpenMP: see threads.py
            os.environ.update(omp_env(os.environ))
        worker = Worker(cfg, ch)
        ch.start(lambda m: worker.stats(m) if worker is not None else P.pong(int(m.get("seq", 0)), {}))
        phases = worker.phases
        import torch
        phases.lap("torch")
        with torch.inference_mode():
            worker.init_device()
            phases.lap("device")
            worker.load_model()
            worker.make_ring()
            phases.lap("ring")
            worker.warmup()
            phases.lap("warm-up")
            ready = worker.ready_message()
            ch.send(ready)
            log.info("ready", worker=cfg.name, backend=ready["backend"], kernels=worker.kernels,
                     max_tokens=worker.max_tokens, transport=worker.ring.transport, startup=phases.line())
            return worker.serve()
    except Exception as e:
        # The error itself travels to the CLI (P.error), which prints it with its hint; the traceback
        # is for --verbose (a debug line there).
        log.debug("worker failed", error=repr(e), traceback=traceback.format_exc(limit=12))
        try:
            ch.send(P.error(wire_error(e)))
        except OSError:
            pass
        return 1
    finally:
        if worker is not None and getattr(worker, "ring", None) is not None:
            worker.ring.unlink()
