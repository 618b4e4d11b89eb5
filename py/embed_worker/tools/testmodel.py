"""Write small random-weight ESM-2 checkpoints in the real on-disk formats.

    python -m embed_worker.tools.testmodel --out DIR [--name test-tiny] [--layers 2 --dim 64 --heads 4 --seed 0]
                                     [--format fair-esm|hf|both]

writes DIR/NAME.pt (fair-esm layout, like the released esm2_*.pt files) and
DIR/NAME/ (Hugging Face EsmForMaskedLM: config.json + model.safetensors, named as transformers
4.x saves them; --hf-layout 5 --hf-shards N --hf-weights bin for the other layouts), both
from ONE set of random weights, so the two formats can be checked against each
other. Needs only torch and safetensors. Files appear atomically (temp + rename);
if the requested outputs already exist the command returns at once.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ..esm2.registry import KNOWN, TEST_TINY

VOCAB = 33


def make_weights(layers: int, dim: int, heads: int, seed: int) -> dict:
    """Random ESM-2 tensors under fair-esm's (prefix-stripped) names, incl. LM and contact heads."""
    import torch

    g = torch.Generator().manual_seed(seed)
    d, f, hd = dim, 4 * dim, dim // heads

    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def ln(prefix):
        return {f"{prefix}.weight": 1.0 + rn(d, std=0.2), f"{prefix}.bias": rn(d, std=0.2)}

    w: dict = {"embed_tokens.weight": rn(VOCAB, d, std=1.0)}
    w["embed_tokens.weight"][1].zero_()  # padding row, as nn.Embedding(padding_idx=1) leaves it
    # Released checkpoints store the rotary buffer as it was during (fp16) training.
    inv_freq = (1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))).half().float()
    for i in range(layers):
        p = f"layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            w[p + f"self_attn.{name}.weight"] = rn(d, d, std=d ** -0.5)
            w[p + f"self_attn.{name}.bias"] = rn(d, std=0.1)
        w[p + "self_attn.rot_emb.inv_freq"] = inv_freq.clone()
        w.update(ln(p + "self_attn_layer_norm"))
        w[p + "fc1.weight"] = rn(f, d, std=d ** -0.5)
        w[p + "fc1.bias"] = rn(f, std=0.1)
        w[p + "fc2.weight"] = rn(d, f, std=f ** -0.5)
        w[p + "fc2.bias"] = rn(d, std=0.1)
        w.update(ln(p + "final_layer_norm"))
    w["contact_head.regression.weight"] = rn(1, layers * heads, std=0.1)
    w["contact_head.regression.bias"] = rn(1, std=0.1)
    w.update(ln("emb_layer_norm_after"))
    w["lm_head.weight"] = w["embed_tokens.weight"]  # tied, as in fair-esm
    w["lm_head.bias"] = rn(VOCAB, std=0.1)
    w["lm_head.dense.weight"] = rn(d, d, std=d ** -0.5)
    w["lm_head.dense.bias"] = rn(d, std=0.1)
    w.update(ln("lm_head.layer_norm"))
    return w


def fair_esm_checkpoint(w: dict, layers: int, dim: int, heads: int) -> dict:
    """The top-level structure of a released esm2_*.pt file."""
    model = {}
    for k, v in w.items():
        prefix = "encoder." if k.startswith(("lm_head.", "contact_head.")) else "encoder.sentence_encoder."
        model[prefix + k] = v.clone()
    cfg_model = argparse.Namespace(
        _name="esm2", arch="esm2", encoder_layers=layers, encoder_embed_dim=dim,
        encoder_ffn_embed_dim=4 * dim, encoder_attention_heads=heads, token_dropout=True,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_positions=1024,
        max_tokens=4096, mask_prob=0.15, leave_unmasked_prob=0.1, random_token_prob=0.1,
    )
    return {"model": model, "args": None, "cfg": {"model": cfg_model}, "optimizer_history": [], "extra_state": {}}


# What transformers 5.x writes where 4.x wrote LayerNorm.weight/bias and a rotary buffer per layer
# (seen in the files of EsmForMaskedLM.save_pretrained, transformers 5.24).
_TF5_LN = re.compile(r"LayerNorm\.(weight|bias)$")
_TF5_ROTARY = "esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq"
HF_LAYOUTS = ("4", "5")  # the transformers major version whose save_pretrained names are written


def hf_state(w: dict, layers: int, layout: str = "4") -> dict:
    """EsmForMaskedLM tensors (esm.-prefixed; the decoder weight is tied and therefore not stored),
    named as transformers `layout` (4 or 5) saves them."""
    m = {"embeddings.word_embeddings.weight": "embed_tokens.weight",
         "encoder.emb_layer_norm_after.weight": "emb_layer_norm_after.weight",
         "encoder.emb_layer_norm_after.bias": "emb_layer_norm_after.bias",
         "contact_head.regression.weight": "contact_head.regression.weight",
         "contact_head.regression.bias": "contact_head.regression.bias"}
    per_layer = {
        "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
        "attention.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
        "output.dense": "fc2", "LayerNorm": "final_layer_norm",
    }
    for i in range(layers):
        for hf, fe in per_layer.items():
            for s in ("weight", "bias"):
                m[f"encoder.layer.{i}.{hf}.{s}"] = f"layers.{i}.{fe}.{s}"
        m[f"encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = f"layers.{i}.self_attn.rot_emb.inv_freq"
    out = {"esm." + k: w[v].clone().contiguous() for k, v in m.items()}
    if layout == "5":
        out = {_TF5_LN.sub(lambda g: f"LayerNorm.{'gamma' if g.group(1) == 'weight' else 'beta'}", k): v
               for k, v in out.items() if "rotary_embeddings" not in k}
        out[_TF5_ROTARY] = w["layers.0.self_attn.rot_emb.inv_freq"].clone()
    out["lm_head.dense.weight"] = w["lm_head.dense.weight"].clone()
    out["lm_head.dense.bias"] = w["lm_head.dense.bias"].clone()
    out["lm_head.layer_norm.weight"] = w["lm_head.layer_norm.weight"].clone()
    out["lm_head.layer_norm.bias"] = w["lm_head.layer_norm.bias"].clone()
    out["lm_head.bias"] = w["lm_head.bias"].clone()
    return out


def hf_config(layers: int, dim: int, heads: int) -> dict:
    return {
        "architectures": ["EsmForMaskedLM"], "model_type": "esm",
        "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0, "classifier_dropout": None,
        "emb_layer_norm_before": False, "esmfold_config": None, "is_folding_model": False,
        "hidden_act": "gelu", "hidden_size": dim, "intermediate_size": 4 * dim,
        "initializer_range": 0.02, "layer_norm_eps": 1e-05, "mask_token_id": 32, "pad_token_id": 1,
        "max_position_embeddings": 1026, "num_attention_heads": heads, "num_hidden_layers": layers,
        "position_embedding_type": "rotary", "token_dropout": True, "use_cache": True,
        "vocab_list": None, "vocab_size": VOCAB, "torch_dtype": "float32",
    }


def write(out: str | os.PathLike, name: str = TEST_TINY.cfg.name, layers: int = TEST_TINY.cfg.num_layers,
          dim: int = TEST_TINY.cfg.embed_dim, heads: int = TEST_TINY.cfg.attention_heads, seed: int = 0,
          fmt: str = "both", force: bool = False, hf_layout: str = "4", hf_shards: int = 1,
          hf_weights: str = "safetensors") -> dict:
    """Write the checkpoint(s); returns {"fair-esm": path, "hf": path} for what was asked. The HF
    folder's tensor names are transformers `hf_layout`'s ("4" or "5"); its weights are one
    model.safetensors, or `hf_shards` > 1 safetensors shards with model.safetensors.index.json (as
    save_pretrained's max_shard_size makes); with `hf_weights="bin"` (4.x's safe_serialization=False)
    pytorch_model.bin, or shards with pytorch_model.bin.index.json."""
    out = Path(out)
    pt, hf_dir = out / f"{name}.pt", out / name
    want_pt, want_hf = fmt in ("fair-esm", "both"), fmt in ("hf", "both")
    result = {**({"fair-esm": str(pt)} if want_pt else {}), **({"hf": str(hf_dir)} if want_hf else {})}
    if not force and (not want_pt or pt.is_file()) and (not want_hf or (hf_dir / "config.json").is_file()):
        return result
    if dim % heads or (dim // heads) % 2:
        raise SystemExit(f"--dim {dim} must be a multiple of --heads {heads} with an even head size")

    if hf_layout not in HF_LAYOUTS or hf_weights not in ("safetensors", "bin") or hf_shards < 1:
        raise ValueError(f"hf_layout {hf_layout!r} (4|5), hf_weights {hf_weights!r} (safetensors|bin), "
                         f"hf_shards {hf_shards} (>= 1)")
    import torch

    out.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    w = make_weights(layers, dim, heads, seed)
    if want_pt and (force or not pt.is_file()):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".pt.partial", dir=out)
        os.close(fd)
        try:
            torch.save(fair_esm_checkpoint(w, layers, dim, heads), tmp)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, pt)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if want_hf and (force or not (hf_dir / "config.json").is_file()):
        tmpd = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out))
        try:
            (tmpd / "config.json").write_text(json.dumps(hf_config(layers, dim, heads), indent=2) + "\n")
            _save_hf_weights(tmpd, hf_state(w, layers, hf_layout), hf_shards, hf_weights)
            for p in (tmpd, *tmpd.iterdir()):
                os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
            if hf_dir.exists():
                shutil.rmtree(hf_dir)
            os.replace(tmpd, hf_dir)
        finally:
            if tmpd.exists():
                shutil.rmtree(tmpd)
    return result


def _save_hf_weights(folder: Path, state: dict, shards: int, weights: str) -> None:
    """state -> one weights file, or `shards` files and an index, named as transformers 4.x's
    save_pretrained names them: model.safetensors / model-0000i-of-0000n.safetensors +
    model.safetensors.index.json, or (safe_serialization=False) pytorch_model.bin /
    pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json."""
    import torch
    from safetensors.torch import save_file

    stem, ext = ("pytorch_model", "bin") if weights == "bin" else ("model", "safetensors")

    def save(part: dict, fn: str) -> None:
        if weights == "bin":
            torch.save(part, folder / fn)
        else:
            save_file(part, str(folder / fn), metadata={"format": "pt"})

    if shards == 1:
        save(state, f"{stem}.{ext}")
        return
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        fn = f"{stem}-{i + 1:05d}-of-{shards:05d}.{ext}"
        part = keys[i::shards]
        save({k: state[k] for k in part}, fn)
        weight_map.update({k: fn for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (folder / f"{stem}.{ext}.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def write_like(out: str | os.PathLike, model: str, seed: int = 0, fmt: str = "both", force: bool = False,
               layers: int | None = None) -> dict:
    """Random weights with the geometry of a released model (or test-tiny), written as
    OUT/MODEL-random like `write`. Speed does not depend on weight values: benchmarks use these.
    layers: only the first this many layers, as OUT/MODEL-random-<layers>l (the model's width and
    heads at a depth that fits where the whole model would not: 15B is 60 GB in fp32)."""
    if model not in KNOWN and model != TEST_TINY.cfg.name:
        raise ValueError(f"{model}: not a released ESM-2 model ({', '.join(KNOWN)})")
    k = (KNOWN[model] if model in KNOWN else TEST_TINY).cfg
    if layers is not None and not 1 <= layers <= k.num_layers:
        raise ValueError(f"{model}: layers must be 1..{k.num_layers}, not {layers}")
    name = f"{model}-random" if layers is None else f"{model}-random-{layers}l"
    return write(out, name, layers or k.num_layers, k.embed_dim, k.attention_heads, seed, fmt, force)


def main(argv: list[str] | None = None) -> int:
    c = TEST_TINY.cfg
    ap = argparse.ArgumentParser(prog="python -m embed_worker.tools.testmodel", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--like", metavar="MODEL", help="random weights with the geometry of a released model "
                    "(e.g. esm2_t36_3B_UR50D); the name defaults to MODEL-random")
    ap.add_argument("--name")
    ap.add_argument("--layers", type=int, default=c.num_layers)
    ap.add_argument("--dim", type=int, default=c.embed_dim)
    ap.add_argument("--heads", type=int, default=c.attention_heads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["fair-esm", "hf", "both"], default="both")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    ap.add_argument("--hf-layout", choices=HF_LAYOUTS, default="4",
                    help="tensor names of the HF folder: as transformers 4.x or 5.x saves them")
    ap.add_argument("--hf-shards", type=int, default=1, help="weight shards of the HF folder, with an index (1: one file)")
    ap.add_argument("--hf-weights", choices=["safetensors", "bin"], default="safetensors")
    a = ap.parse_args(argv)
    if a.like:
        if a.like not in KNOWN:
            ap.error(f"--like {a.like}: not a released ESM-2 model ({', '.join(KNOWN)})")
        k = KNOWN[a.like].cfg
        a.layers, a.dim, a.heads, a.name = k.num_layers, k.embed_dim, k.attention_heads, a.name or f"{a.like}-random"
    a.name = a.name or c.name
    paths = write(a.out, a.name, a.layers, a.dim, a.heads, a.seed, a.format, a.force,
                  hf_layout=a.hf_layout, hf_shards=a.hf_shards, hf_weights=a.hf_weights)
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
