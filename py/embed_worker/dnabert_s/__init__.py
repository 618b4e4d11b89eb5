"""DNABERT-S / DNABERT-2 (MosaicBERT with ALiBi) on packed token streams.

config.py    config.json -> DNABERTConfig, with bounds checks (torch-free)
model.py     the flat reference model: packed forward, exact per-sequence ALiBi attention, pooling
weights.py   strict loading of Hugging Face folders (DNABERT-S unprefixed, DNABERT-2 `bert.` + `cls.*`)
testmodel.py small random-weight folders in the real layouts, for tests

Nothing here imports or runs the Python files shipped inside a model folder (bert_layers.py).
"""
