"""The worker's token budget per batch under `--max-tokens auto` (src/workers/session.ts says the
same rule in words). Torch is passed in: this module loads nothing."""
from __future__ import annotations

CPU_DEFAULT_TOKENS = 4096
"""Auto token budget on CPU: big enough for one 1022-residue sequence, small enough to keep
latency per batch near a second on a laptop-sized model."""
GPU_MAX_TOKENS = 65536
"""Upper bound of the auto budget on GPU; larger batches gain little once GEMMs are saturated."""
GPU_MEMORY_FRACTION = 0.5
"""Share of free GPU memory (after the weights) the auto budget may plan to use for activations."""


def auto_budget(torch, model, cfg, device, esize: int | None = None, per_token: int | None = None) -> int:
    """`per_token`: activation bytes per token, when the family sizes it (dnabert_run.per_token_bytes)."""
    if device.type != "cuda":
        return CPU_DEFAULT_TOKENS
    free, _total = torch.cuda.mem_get_info(device)
    d, f = cfg.embed_dim, cfg.ffn_dim
    esize = esize or next(model.parameters()).element_size()
    # Live activations per token inside one block (x, residual, qkv, attention out, ffn hidden),
    # plus one kept hidden state per requested layer, with a 2x margin for allocator slack.
    per_token = per_token or 2 * esize * (2 * d + 3 * d + d + f) + esize * d * 4
    budget = int(free * GPU_MEMORY_FRACTION // per_token)
    return max(1026, min(GPU_MAX_TOKENS, budget // 64 * 64))
