"""The one place that imports pormake (slow: it pulls in jax), quiet and cached per process."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@lru_cache(maxsize=1)
def pormake() -> Any:
    """Import pormake once, with its chatty logger limited to errors and no log file."""
    # pormake's Scaler JIT-compiles a new gradient for every framework (its closure holds that net's constants),
    # so XLA's optimisation passes run once per build on a tiny function and cost more than they save: at level
    # 0, 40 de novo recipes took 0.44 CPU-s per build against 0.53, cells equal to 1e-4 (only pormake uses JAX).
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
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


@lru_cache(maxsize=1)
def builder() -> Any:
    """pormake's Builder with a Locator whose best-fit RMSD is memoised (``locator``), reused across builds."""
    return pormake().Builder(locator=locator())


@lru_cache(maxsize=1)
def locator() -> Any:
    """pormake's Locator, with ``calculate_rmsd`` memoised on the points it compares. pormake's Builder asks it
    twice per (node type, block) in every build (the block and its mirror image, an Euler-angle scan each, a
    third of a de novo build's time), and a campaign builds the same (net, block) pairs again and again. The
    answer depends only on the target's and the block's connection-point directions and the scan's size."""
    pm = pormake()

    class MemoLocator(pm.Locator):
        cache: dict[tuple, float] = {}

        def calculate_rmsd(self, target, bb, max_n_slices=6):
            key = (_points(target.atoms.positions), _points(bb.local_structure().atoms.positions), max_n_slices)
            if key not in self.cache:
                if len(self.cache) > 100_000:  # a bound for very long runs; entries are cheap to recompute
                    self.cache.clear()
                self.cache[key] = super().calculate_rmsd(target, bb, max_n_slices)
            return self.cache[key]

    return MemoLocator()


def _points(positions) -> bytes:
    return np.round(np.asarray(positions, dtype=float), 6).tobytes()


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
