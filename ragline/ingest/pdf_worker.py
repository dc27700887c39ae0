"""The PDF parser process: one per scan, run as a script so it imports only pypdf.

Its address space is capped (RLIMIT_AS, set by the process itself, so the parent never forks
with a hook); the parent enforces the time limit by killing it. Protocol on stdin/stdout: a JSON
header line {"size", "max_pages"} then `size` bytes of PDF; the answer is one JSON line, either
{"pages": [...], "title": ...} or {"reason": ..., "detail": ...}.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
from typing import Any


def parse(data: bytes, max_pages: int) -> dict[str, Any]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        return {"reason": "encrypted_pdf", "detail": "the PDF is encrypted"}
    count = len(reader.pages)
    if count > max_pages:
        return {"reason": "too_many_pages", "detail": f"{count} pages is over pdf.max_pages ({max_pages})"}
    pages = [page.extract_text() or "" for page in reader.pages]
    title = reader.metadata.get("/Title") if reader.metadata else None
    return {"pages": pages, "title": str(title) if title else None}


def main() -> None:
    memory = int(sys.argv[1])
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings duplicate our reason
    import pypdf  # noqa: F401  (imported before "ready" so the time limit covers parsing only)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"ready\n")
    stdout.flush()
    while header := stdin.readline():
        request = json.loads(header)
        data = stdin.read(request["size"])
        done = False
        try:
            reply = parse(data, request["max_pages"])
        except MemoryError:
            reply = {"reason": "pdf_memory_limit", "detail": f"parsing needed more than {memory >> 20} MiB"}
            done = True  # a process that ran out of memory is not trusted with the next file
        except RecursionError:
            reply = {"reason": "corrupt_pdf", "detail": "RecursionError: objects nested too deep"}
        except Exception as exc:  # any parser failure quarantines this file, not the scan
            reply = {"reason": "corrupt_pdf", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
        stdout.write(json.dumps(reply).encode("ascii") + b"\n")
        stdout.flush()
        if done:
            return


if __name__ == "__main__":
    main()
