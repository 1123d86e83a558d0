"""The one place that imports pormake (slow: it pulls in jax), quiet and cached per process."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator


@lru_cache(maxsize=1)
def pormake() -> Any:
    """Import pormake once, with its chatty logger limited to errors and no log file."""
    # pormake opens ./runtime.log (mode "w") at import time; give it a null handler instead.
    real_file_handler = logging.FileHandler
    logging.FileHandler = lambda *args, **kwargs: logging.NullHandler()  # type: ignore[misc,assignment]
    try:
        import pormake as pm
    finally:
        logging.FileHandler = real_file_handler  # type: ignore[misc]

    # pormake logs every placement at INFO to stdout; keep only errors.
    logging.getLogger("unique_logger").setLevel(logging.ERROR)
    for handler in logging.getLogger("unique_logger").handlers:
        handler.setLevel(logging.ERROR)
    return pm


def pormake_version() -> str:
    return version("pormake")


def database_dir() -> Path:
    """Directory of pormake's bundled database (bbs/ and topologies/), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("pormake")
    if spec is None or spec.origin is None:
        raise ImportError("pormake is not installed")
    return Path(spec.origin).parent / "database"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings pormake's dependencies print on every call: scipy on symmetric BBs whose
    best rotation is not unique, pymatgen/monty on space-group symbols while parsing nets."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal rotation is not uniquely", category=UserWarning)
        warnings.filterwarnings("ignore", message="Full symbol not available", category=UserWarning)
        yield
