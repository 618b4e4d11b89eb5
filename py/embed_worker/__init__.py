"""The PyTorch worker of embed: one process per device, started by the orchestrator
(`python -m embed_worker`), computing embeddings of packed batches into a shared ring.

    __main__, worker     the lifecycle: init_device -> load_model -> arrange (gpu) -> warm-up ->
                         READY -> embed* -> shutdown
    startup, threads,    start-up timing, CPU threads from the CPUs granted, dying with the parent
      lifeline
    dnabert_run          the worker's DNABERT-S steps: load (reference, or gpu/ in fp16/bf16),
                         warm-up, activation bytes per token, pooling ([CLS]/[SEP] in the mean)
    budget               the auto token budget (CPU default, or GPU free memory / bytes per token)
    registry             every family's checkpoints: which family a model is, DNABERT-S folders
                         and names, `embed models` rows (esm2/registry.py keeps ESM-2's search)
    errors, log          named errors ({name, message, hint} on the wire), JSON log lines on stderr
    checkpoint           reading checkpoint files for every family: weights-only torch.load,
                         safetensors headers checked before reading, Hugging Face folders
    upload               a loaded checkpoint onto a GPU in the model's dtype (threads, pinned
                         buffers, cast on the GPU)
    hub                  model files from the network for every family: the Hugging Face cache
                         and downloads (huggingface_hub), fair-esm .pt URLs (torch.hub), locks
    wire/                protocol (the contract, mirrored by src/protocol.ts), control channel,
                         data socket, ring, transport: standard library, plus torch in ring.py
                         for the slot views
    esm2/                one model family: flat reference model, attention (exact CPU path,
                         varlen kernels), weights, registry, download
    dnabert_s/           a second family, laid out the same way
    gpu/                 fast arrangements of ESM-2's blocks: arrange (which one, and what it does
                         to a loaded model), fused block loop, Triton kernels, quack epilogues,
                         FlashAttention-4
    tools/               command-line helpers: convert (and its sources), doctor, testmodel

Imports go one way, down this list: the worker imports anything; tools/ and gpu/ import families
(tools/ also threads and lifeline, to size and bind a process pool);
a family imports checkpoint, upload, hub, errors and log but never gpu/, wire/ or another family; wire/
imports only errors. checkpoint.py sits at the top because more than one family reads files with
it (dnabert_s takes torch_load from it), so it names no family. tests/test_architecture.py checks
this.
"""
