"""Parse one upload in a throwaway child process with memory, CPU and wall-clock limits.

Parsers are large, mostly third-party code fed hostile bytes; a crafted file can make
them loop, allocate without end or crash. In a child process that costs one process,
not the server. The child is `python -m tether.ingest.isolated CPU_SECONDS MEMORY_BYTES`:
stdin carries one JSON header line (format, name, chunk options) and then the raw bytes;
on success stdout carries exactly `ParsedDocument.model_dump_json()` and the exit status
is 0. A refusal the child can name is {"code", "message"} JSON with exit status 3.
Anything else (a signal, another status) is classified by the parent.

The wall-clock limit covers child start-up (about 0.3 s of imports); the CPU limit is
counted from after the imports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import resource
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

import tether
from tether.errors import EmptyDocument, IngestError, UploadRejected
from tether.ingest.drafts import ChunkOptions, ParsedDocument

if TYPE_CHECKING:
    from tether.security.uploads import ScannedUpload, UploadLimits

__all__ = ["parse_isolated"]

log = logging.getLogger(__name__)

_MODULE = "tether.ingest.isolated"
_EXIT_REFUSED = 3
# Only what Python and the locale need: the server's secrets stay out of the process that
# handles hostile input.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONHOME", "PYTHONPATH")
# Out-of-memory inside native code aborts instead of raising MemoryError.
_NATIVE_OOM = (b"memory allocation of", b"std::bad_alloc", b"Cannot allocate memory")
_STDERR_LOGGED = 2000


async def parse_isolated(
    upload: ScannedUpload, options: ChunkOptions, limits: UploadLimits
) -> ParsedDocument:
    """Run `formats.parse` on a screened upload in a child process with hard limits.

    Raises UploadRejected with code parse_timeout, parse_memory, parse_failed or empty.
    """
    header = json.dumps(
        {"format": upload.format, "name": upload.name, "options": options.model_dump()}
    ).encode()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # never import from the server's working directory
        "-m",
        _MODULE,
        str(limits.parse_cpu_seconds),
        str(limits.parse_memory_bytes),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    try:
        async with asyncio.timeout(limits.parse_seconds):
            stdout, stderr = await process.communicate(header + b"\n" + upload.data)
    except TimeoutError:
        raise UploadRejected(
            "parse_timeout", f"reading the file took longer than {_seconds(limits.parse_seconds)}"
        ) from None
    finally:
        # Also on cancellation (the client went away): never leave a parser running.
        if process.returncode is None:
            process.kill()
            await process.wait()
    return _outcome(process.returncode, stdout, stderr, upload.name, limits)


def _outcome(
    status: int | None, stdout: bytes, stderr: bytes, name: str, limits: UploadLimits
) -> ParsedDocument:
    if status == 0:
        try:
            document = ParsedDocument.model_validate_json(stdout)
        except ValidationError:
            log.error("parser child for %r wrote malformed output: %r", name, stdout[:200])
            raise UploadRejected("parse_failed", "the file could not be read") from None
        if not document.drafts:
            raise UploadRejected("empty", "no text was found in the file")
        return document
    if status == _EXIT_REFUSED:
        try:
            refusal = json.loads(stdout)
            code, message = str(refusal["code"]), str(refusal["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "parse_failed", "the file could not be read"
        raise UploadRejected(code, message)
    tail = stderr[-_STDERR_LOGGED:]
    if status == -signal.SIGXCPU:
        raise UploadRejected(
            "parse_timeout",
            f"reading the file used more than {_seconds(limits.parse_cpu_seconds)} of CPU time",
        )
    # SIGXCPU is fatal by default, so the hard CPU limit's SIGKILL never comes: a SIGKILL
    # we did not send is the kernel's out-of-memory killer.
    if status == -signal.SIGKILL or any(marker in tail for marker in _NATIVE_OOM):
        raise UploadRejected("parse_memory", "reading the file needed too much memory")
    log.warning(
        "parser child for %r ended with status %s: %s", name, status, tail.decode(errors="replace")
    )
    raise UploadRejected("parse_failed", "the parser crashed on this file")


def _seconds(value: float) -> str:
    return f"{value:g} second" + ("" if value == 1 else "s")


def _child_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in _ENV_KEEP if key in os.environ}
    # The child must import this very tether, installed or not.
    root = str(Path(tether.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    # Extra threads and malloc arenas each reserve address space that RLIMIT_AS counts.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    return env


# --- the child -------------------------------------------------------------------------

# Built before parsing: after a MemoryError there may be no room to build anything.
_OUT_OF_MEMORY = json.dumps(
    {"code": "parse_memory", "message": "reading the file needed too much memory"}
).encode()


def _refusal(code: str, message: str) -> tuple[bytes, int]:
    return json.dumps({"code": code, "message": message}).encode(), _EXIT_REFUSED


def _child(argv: list[str]) -> int:
    # The result goes to a private copy of stdout; fd 1 itself now points at stderr, so a
    # stray print in any library (Python or C) cannot corrupt the JSON.
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Library log lines and warnings per malformed object could fill the parent's memory
    # through the stderr pipe; only a crash's traceback is worth sending.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    cpu_seconds, memory_bytes = int(argv[0]), int(argv[1])

    from tether.ingest import formats

    _limit(cpu_seconds, memory_bytes)
    try:
        header = json.loads(sys.stdin.buffer.readline())
        data = sys.stdin.buffer.read()
        options = ChunkOptions.model_validate(header["options"])
        document = formats.parse(header["format"], data, name=header["name"], options=options)
        payload, status = document.model_dump_json().encode(), 0
    except MemoryError:
        payload, status = _OUT_OF_MEMORY, _EXIT_REFUSED
    except EmptyDocument as exc:
        payload, status = _refusal("empty", str(exc) or "no text was found in the file")
    except IngestError as exc:
        payload, status = _refusal("parse_failed", str(exc) or "the file could not be read")
    except RecursionError:
        payload, status = _refusal("parse_failed", "the file is nested too deeply to read")
    except Exception:
        traceback.print_exc()  # to stderr, which the parent logs; never to the user
        payload, status = _refusal("parse_failed", "the parser crashed on this file")
    with result:
        result.write(payload)
    return status


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = math.ceil(usage.ru_utime + usage.ru_stime)
    _lower(resource.RLIMIT_CPU, spent + cpu_seconds, spent + cpu_seconds + 1)
    _lower(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    _lower(resource.RLIMIT_CORE, 0, 0)


def _lower(limit: int, soft: int, hard: int) -> None:
    """Set a limit, never above the hard limit the child inherited (raising it fails)."""
    _, inherited = resource.getrlimit(limit)
    if inherited != resource.RLIM_INFINITY:
        soft, hard = min(soft, inherited), min(hard, inherited)
    resource.setrlimit(limit, (soft, hard))


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
