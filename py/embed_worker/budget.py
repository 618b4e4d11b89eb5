"""A GPU worker's token budget per batch under `--max-tokens auto` (src/workers/session.ts says the
rule in words and decides every other budget). Torch is passed in: this module loads nothing."""
from __future__ import annotations

GPU_MAX_TOKENS = 65536
"""Upper bound of the auto budget on GPU; larger batches gain little once GEMMs are saturated."""
GPU_MEMORY_FRACTION = 0.5
"""Share of free GPU memory (after the weights) the auto budget may plan to use for activations."""


def auto_budget(torch, model, cfg, device, esize: int | None = None, per_token: int | None = None) -> int:
    """`per_token`: activation bytes per token, when the family sizes it (dnabert_run.per_token_bytes)."""
    if device.type != "cuda":
        # The orchestrator decides a CPU worker's budget (src/workers/session.ts budgetFor) and
        # always sends it; only a GPU worker sizes its own, from the memory it finds.
        from .errors import EmbedWorkerError
        raise EmbedWorkerError("no token budget given for a CPU worker", "pass maxTokens in the worker config "
                               "(the orchestrator sends --max-tokens, or 4096 for auto on CPU)", name="BadOptions")
    free, _total = torch.cuda.mem_get_info(device)
    d, f = cfg.embed_dim, cfg.ffn_dim
    esize = esize or next(model.parameters()).element_size()
    # Live activations per token inside one block (x, residual, qkv, attention out, ffn hidden),
    # plus one kept hidden state per requested layer, with a 2x margin for allocator slack.
    per_token = per_token or 2 * esize * (2 * d + 3 * d + d + f) + esize * d * 4
    budget = int(free * GPU_MEMORY_FRACTION // per_token)
    return max(1026, min(GPU_MAX_TOKENS, budget // 64 * 64))
