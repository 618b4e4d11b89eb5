"""Deliberate bugs, switched on by EMBED_FAULT in tests to prove that `embed validate` and the
parity checks catch them; never used otherwise. ESM-2's are the ones the VirNucPro refactor
shipped; DNABERT-S's live beside its run loop (dnabert_run.py), which names these to refuse them."""

ESM2_FAULTS = {
    "no-dropout-scale": "the x0.88 token-dropout scale is not applied",
    "eos-in-mean": "the EOS row is included in the mean",
    "tanh-gelu": "tanh-approximated GELU instead of erf",
}
