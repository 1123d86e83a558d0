"""A model directory carried as bytes, so that a model travels with the job rather than by path.

On a Ray cluster without a shared filesystem a worker cannot read the driver's ``models/generator``. The
driver reads the directory once (``ModelFiles.read``); the part's builder carries the bytes (Ray ships them
through its object store with the actor's arguments); the worker writes them once into its user's cache
folder, named by their digest (``materialize``) and loads the model from there with the usual loader.
Only plain files (weights in safetensors or torch ``weights_only`` form, JSON) travel: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from discovery.errors import DiscoveryError

MAX_BYTES = 256 * 2**20  # a model directory bigger than this is not a model (a run directory by mistake?)


@dataclass(frozen=True)
class ModelFiles:
    source: str  # the driver's path, for messages
    files: tuple[tuple[str, bytes], ...]  # (path relative to the directory, content), sorted
    digest: str  # sha256 over names and contents

    @classmethod
    def read(cls, path: str | Path) -> "ModelFiles":
        root = Path(path)
        if not root.is_dir():
            raise DiscoveryError(f"no model directory at {root}")
        names = sorted(p for p in root.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in names)
        if size > MAX_BYTES:
            raise DiscoveryError(f"{root} holds {size / 2**20:.0f} MiB: too big to be a model directory "
                                 f"(limit {MAX_BYTES // 2**20} MiB)")
        files = tuple((p.relative_to(root).as_posix(), p.read_bytes()) for p in names)
        return cls(str(root), files, _digest(files))

    @property
    def nbytes(self) -> int:
        return sum(len(data) for _, data in self.files)

    def materialize(self, cache: str | Path | None = None) -> Path:
        """The files in ``cache/<digest>`` (default: the user's cache folder, not a shared /tmp where another
        user could plant a model), written once per machine; an existing copy is reused. Written to a
        scratch directory first and renamed, so that two workers of one machine never read a half-written
        model."""
        cache = Path(cache) if cache else default_cache()
        target = cache / self.digest[:24]
        if target.is_dir():
            return target
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = Path(tempfile.mkdtemp(prefix=".incoming-", dir=cache))
        for name, data in self.files:
            if name.startswith("/") or ".." in Path(name).parts:  # only what read() can produce
                raise DiscoveryError(f"model file name {name!r} leaves its directory")
            out = scratch / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        try:
            os.rename(scratch, target)
        except OSError:  # another worker of this machine got there first: keep its copy
            if not target.is_dir():
                raise
            shutil.rmtree(scratch)
        return target


def default_cache() -> Path:
    """The user's cache folder; where it cannot be written (a worker without a home), a temporary folder
    of this user's only."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mof-discovery" / "models"
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cache
    except OSError:
        own = Path(tempfile.gettempdir()) / f"mof-discovery-models-{os.getuid()}"
        own.mkdir(mode=0o700, exist_ok=True)
        if own.stat().st_uid != os.getuid():  # planted by another user
            raise DiscoveryError(f"{own} belongs to another user; set XDG_CACHE_HOME to a folder of yours")
        return own


def _digest(files: tuple[tuple[str, bytes], ...]) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()
