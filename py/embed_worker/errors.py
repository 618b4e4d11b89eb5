"""Errors the worker reports to the orchestrator as {name, message, hint}. Torch-free."""
from __future__ import annotations


class EmbedWorkerError(Exception):
    """Base class: a message, a hint saying how to fix it, and a stable name for the wire."""

    default_name = "WorkerError"

    def __init__(self, message: str, hint: str = "", name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.name = name or self.default_name

    def to_wire(self) -> dict:
        return {"name": self.name, "message": self.message, "hint": self.hint}


class ModelNotFound(EmbedWorkerError):
    default_name = "ModelNotFound"


class BadCheckpoint(EmbedWorkerError):
    default_name = "BadCheckpoint"


class BackendUnavailable(EmbedWorkerError):
    default_name = "BackendUnavailable"
