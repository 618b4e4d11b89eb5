"""Typed errors of the embed command line, rebuilt on the Python side.

The orchestrator ends every failure with an exit code (README "Exit codes") and prints the message
and a hint on stderr; :func:`from_exit` turns that back into one of these, carrying the message,
the hint, the exit code and the whole stderr, so nothing the command said is lost.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence


class EmbedError(Exception):
    """Any failure of embed: ``message``, ``hint`` (how to fix it), ``exit_code`` and ``stderr``."""

    exit_code: Optional[int] = 1

    def __init__(self, message: str, hint: Optional[str] = None, *, exit_code: Optional[int] = None,
                 stderr: str = "", command: Optional[Sequence[str]] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code
        self.stderr = stderr
        self.command = list(command) if command is not None else None

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


class OptionsError(EmbedError, ValueError):
    """Bad options (exit 2): an unknown option, a layer the model lacks, a bad value."""
    exit_code = 2


class InputError(EmbedError, ValueError):
    """Bad input (exit 3): malformed FASTA, an empty sequence, a repeated id; the message says where."""
    exit_code = 3


class WorkerError(EmbedError):
    """A worker failed (exit 4): it died, could not start, or reported an error."""
    exit_code = 4


class ModelError(EmbedError):
    """The model was not found or its checkpoint cannot be used (exit 5)."""
    exit_code = 5


class OutputError(EmbedError):
    """The store could not be written or read (exit 6): not a store, unfinished, damaged, occupied."""
    exit_code = 6


class ValidationError(EmbedError):
    """`embed validate` found embeddings off the reference (exit 7)."""
    exit_code = 7


class RunInterrupted(EmbedError):
    """The run was interrupted (exit 130); what finished is committed and the same call resumes."""
    exit_code = 130


class OrchestratorNotFound(EmbedError):
    """Neither an embed checkout with Bun nor an `embed` launcher was found (nothing was run)."""
    exit_code = None


BY_EXIT_CODE = {2: OptionsError, 3: InputError, 4: WorkerError, 5: ModelError, 6: OutputError,
                7: ValidationError, 130: RunInterrupted}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# consola prints ` ERROR  message`; the CLI's own argument errors print `error: message`.
_ERROR = re.compile(r"^\s*(?:ERROR\s+|error:\s*|\[error\]\s*)(.*)$")
_HINT = re.compile(r"^\s*(?:ℹ\s*)?(?:\[info\]\s*)?hint:\s*(.*)$")


def parse_stderr(stderr: str) -> tuple[Optional[str], Optional[str]]:
    """The last error message on stderr and the hint printed after it (either may be None)."""
    lines = [_ANSI.sub("", l).rstrip() for l in stderr.splitlines()]
    at = max((i for i, l in enumerate(lines) if _ERROR.match(l)), default=None)
    if at is None:
        return None, next((m.group(1) for l in reversed(lines) if (m := _HINT.match(l))), None)
    message = [_ERROR.match(lines[at]).group(1)]  # type: ignore[union-attr]
    i = at + 1
    while i < len(lines) and lines[i].strip() and not _HINT.match(lines[i]):
        message.append(lines[i].strip())  # a message that goes on over several lines
        i += 1
    hint = next((m.group(1) for line in lines[i:] if (m := _HINT.match(line))), None)
    return " ".join(message).strip(), hint


def from_exit(code: int, stderr: str, command: Sequence[str]) -> EmbedError:
    """The typed error for the command's exit `code`, message and hint read from its `stderr`."""
    message, hint = parse_stderr(stderr)
    if code < 0:
        # killed by a signal (subprocess reports -N): no message of its own
        return EmbedError(message or f"the embed command was killed by signal {-code}",
                          hint or "see the stderr above; rerun the same call to resume a run",
                          exit_code=code, stderr=stderr, command=command)
    if message is None:
        tail = [l for l in _ANSI.sub("", stderr).splitlines() if l.strip()][-5:]
        message = f"embed exited with status {code}" + (": " + " | ".join(tail) if tail else " and printed nothing on stderr")
    cls = BY_EXIT_CODE.get(code, EmbedError)
    return cls(message, hint, exit_code=code, stderr=stderr, command=command)
