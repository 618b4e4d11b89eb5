"""embed from Python: ``embed.run(fasta, model=...) -> Store``, ``for ids, X in embed.iter(...)``,
``embed.open(path) -> Store``.

This package computes nothing: it drives the embed command line (the Bun orchestrator and its
PyTorch workers) as a subprocess, found as :mod:`embed.locate` describes, and reads the store it
writes. Layout: locate (which command), process (flags, events, stderr, exit codes), errors
(typed errors per exit code), progress (tqdm or a callback), store (reading a store), api.
"""
from .api import inspect, iter, open, run
from .errors import (EmbedError, InputError, ModelError, OptionsError, OrchestratorNotFound, OutputError,
                     RunInterrupted, ValidationError, WorkerError)
from .store import Store

__all__ = ["run", "iter", "open", "inspect", "Store", "EmbedError", "OptionsError", "InputError",
           "WorkerError", "ModelError", "OutputError", "ValidationError", "RunInterrupted",
           "OrchestratorNotFound"]
__version__ = "0.1.0"
