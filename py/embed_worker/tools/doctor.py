"""`python -m embed_worker.tools.doctor`: what this Python can do for embed, as JSON on stdout.
Each problem comes with a fix hint. Never raises: a missing torch is itself a finding."""
from __future__ import annotations

import json
import platform
import sys


def report() -> dict:
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable, "problems": []}
    try:
        import torch
    except Exception as e:  # torch missing or broken
        out["torch"] = None
        out["problems"].append({"what": f"torch does not import: {e}",
                                "hint": "run scripts/setup (it makes .venv with torch), or set EMBED_PYTHON"})
        return out
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    out["devices"] = [{"index": i, "name": torch.cuda.get_device_name(i),
                       "memoryGiB": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                      for i in range(torch.cuda.device_count())] if out["cuda"] else []
    try:
        from ..esm2 import attention
        out["attention"] = {"cpu": attention.backend_for(torch.device("cpu"))}
        if out["cuda"]:
            out["attention"]["cuda"] = attention.backend_for(torch.device("cuda", 0))
    except Exception as e:
        out["problems"].append({"what": f"attention backend: {e}", "hint": getattr(e, "hint", "") or
                                "install flash-attn, or torch >= 2.10 for torch.nn.attention.varlen"})
    try:
        import triton
        out["kernels"] = {"triton": triton.__version__, "gpu": "triton", "cpu": "eager"}
    except Exception:
        out["kernels"] = {"triton": None, "gpu": "compile", "cpu": "eager"}
    if out["cuda"]:  # what `--kernels auto` gives a GPU worker (gpu.arrange.gpu_kernels, as the worker)
        from ..gpu.arrange import gpu_kernels
        kind, notes = gpu_kernels("auto", torch.device("cuda", 0), torch.float16)
        out["kernels"]["gpu"] = kind
        out["kernels"]["quack"] = "fp16/bf16: FC1+GELU and QKV+rotary as quack GEMMs" if kind == "quack" else None
        for level, what, hint in notes:
            if level == "info":  # quack off: why, in the kernels report
                out["kernels"]["quack"] = what
            else:
                out["problems"].append({"what": what, "hint": hint, "severity": "warn"})
        if kind == "quack":  # what batches of long sequences get under quack (gpu.arrange.arrange)
            from ..gpu.long_attention import LONG_MIN_LEN, flash4
            fn, why = flash4()
            out.setdefault("attention", {})["long"] = (f"flash-attn-4 for batches with sequences > {LONG_MIN_LEN} tokens "
                                                       "(loaded only when --truncate allows them)"
                                                       if fn else f"varlen flash kernel ({why})")
    out["families"] = families(out)
    for mod, hint in (("numpy", "pip install numpy"), ("safetensors", "pip install safetensors")):
        try:
            __import__(mod)
        except Exception:
            out["problems"].append({"what": f"{mod} is missing", "hint": hint})
    for mod in ("h5py", "pyarrow"):  # only `embed convert --to hdf5|parquet` needs them
        try:
            __import__(mod)
        except Exception:
            out["problems"].append({"what": f"{mod} is missing: `embed convert --to {'hdf5' if mod == 'h5py' else 'parquet'}` will fail",
                                    "hint": f"run scripts/setup, or pip install {mod}", "severity": "warn"})
    if not out["cuda"]:
        out["problems"].append({"what": "no CUDA device visible to torch: embed will run on the CPU (slow)",
                                "hint": "on a GPU machine check nvidia-smi, CUDA_VISIBLE_DEVICES and the torch build (torch.version.cuda)",
                                "severity": "warn"})
    out["platform"] = platform.platform()
    return out


def families(out: dict) -> dict:
    """Per model family: what runs it on CPU and on a GPU here, and which released models are found."""
    from ..registry import describe_all
    found: dict[str, list[str]] = {}
    for row in describe_all():
        if row["path"]:
            found.setdefault(row["family"], []).append(row["name"])
    gpu = out["kernels"]["gpu"] if out.get("cuda") else None
    return {
        "esm2": {"cpu": "eager", "gpu": gpu, "found": found.get("esm2", [])},
        "dnabert-s": {"cpu": "exact ALiBi reference (fp32)",
                      "gpu": ("triton ALiBi + GeGLU (fp16/bf16; fp32: the reference)" if out["kernels"]["triton"]
                              else "exact reference (Triton missing)") if out.get("cuda") else None,
                      "found": found.get("dnabert-s", [])},
    }


if __name__ == "__main__":
    json.dump(report(), sys.stdout, indent=2)
    sys.stdout.write("\n")
