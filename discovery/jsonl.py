"""Append-only JSON-lines logs: how batch jobs save each result as it finishes and resume after a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any


def read_rows(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Rows of a log by ``row[key]`` (the last line wins); lines cut short by an interruption are skipped."""
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row[key]] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # that item is simply redone
    return rows


def open_for_append(path: Path) -> IO[str]:
    """Open a log for appending, first ending a line an interruption cut short."""
    cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    log = path.open("a")
    if cut:
        log.write("\n")
    return log


def append(log: IO[str], row: dict[str, Any]) -> None:
    log.write(json.dumps(row) + "\n")
    log.flush()
