"""The default models the project ships inside the package (``discovery/data/models/KIND``), and how a
config or a command names them: ``default`` is the shipped model of that kind, anything else a directory.

Each shipped model directory holds the weights (torch ``weights_only`` state dicts or ``.npz`` arrays,
never pickle), ``model.json`` (its settings and training summary) and ``fingerprint.json`` (outputs
recorded when it was trained, which ``tests/test_shipped_models.py`` recomputes). ``discovery/data/models/
README.md`` says for each the command that regenerates it, its training data and the figures it reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parent / "data" / "models"
DEFAULT = "default"
FINGERPRINT = "fingerprint.json"


def resolve_model(value: str | Path, kind: str) -> Path:
    """``default``: the shipped model of ``kind`` (generator, surrogate, transport); another shipped model's
    name (``core``: ``generator_core``, trained on both pools) when no such path exists here; else the path
    given. Whoever loads it says what is missing."""
    if str(value) == DEFAULT:
        return SHIPPED / kind
    named = SHIPPED / f"{kind}_{value}"
    if not Path(value).exists() and str(value).isidentifier() and named.is_dir():
        return named
    return Path(value)


def write_fingerprint(path: str | Path, values: dict[str, Any]) -> Path:
    out = Path(path) / FINGERPRINT
    out.write_text(json.dumps(values, indent=1) + "\n")
    return out


def read_fingerprint(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / FINGERPRINT).read_text())
