"""Running one embed command: options to flags, NDJSON events from stdout, every stderr line kept.

stdout carries only data (NDJSON events with ``--json``, or one JSON document), stderr the logs,
the error and its hint: both are read by threads as they come, so neither pipe can fill and stall
the orchestrator, and the stderr text is kept whole for the error raised on a non-zero exit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from .errors import EmbedError, from_exit


def flags(options: Mapping[str, Any]) -> List[str]:
    """Keyword options as CLI flags: ``max_tokens=512`` → ``--max-tokens 512``, True → ``--name``,
    False → ``--no-name``, a list → a comma list, None → left out (the CLI's default)."""
    out: List[str] = []
    for key, value in options.items():
        if value is None:
            continue
        name = "--" + key.replace("_", "-")
        if value is True:
            out.append(name)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            out += [name, ",".join(str(v) for v in value)]
        else:
            out += [name, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return out


def run(argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None, stdin: Optional[Iterable[str]] = None,
        on_line: Optional[Callable[[Dict[str, Any]], None]] = None, echo: bool = True) -> str:
    """Run `argv`; return its stdout (the lines given to `on_line` as parsed JSON are not kept).

    `stdin`: text chunks written to the command's stdin from a thread (the input ``-``).
    `echo`: copy stderr to ``sys.stderr`` as it comes (it is kept either way).
    Raises the typed :class:`EmbedError` for a non-zero exit. On KeyboardInterrupt the command gets
    one SIGINT (it finishes and commits its batches in flight, so the same call resumes); a second
    KeyboardInterrupt kills it.
    """
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("NO_COLOR", "1")  # plain text on stderr, to read the error and hint back
    # Its own session: a Ctrl-C at the terminal reaches Python only, which forwards exactly one
    # SIGINT (two would make the orchestrator exit at once instead of committing).
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env,
                            text=True, encoding="utf-8", errors="replace", bufsize=1, start_new_session=True)
    err: List[str] = []
    writer_error: List[BaseException] = []

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            err.append(line)
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    def write_stdin() -> None:
        try:
            for chunk in stdin:  # type: ignore[union-attr]
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # the command stopped reading (it failed on the input): its exit code says why
        except BaseException as e:  # noqa: BLE001 - a bad record from the caller's iterable
            writer_error.append(e)
            # Killed before stdin closes: an end of input now would read as a short but valid
            # input and could be committed as complete. Killed, the store stays unfinished.
            proc.kill()
        finally:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass

    threads = [threading.Thread(target=read_stderr, daemon=True)]
    if stdin is not None:
        threads.append(threading.Thread(target=write_stdin, daemon=True))
    for t in threads:
        t.start()
    out: List[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if on_line is not None and line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    out.append(line)
                    continue
                on_line(event)
            else:
                out.append(line)
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        for t in threads:
            t.join()
    if writer_error:
        raise writer_error[0]
    if code != 0:
        raise from_exit(code, "".join(err), argv)
    return "".join(out)


def _stop(proc: subprocess.Popen) -> None:
    """One SIGINT, then wait for the commit; a second KeyboardInterrupt kills the command."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise


__all__ = ["flags", "run", "EmbedError"]
