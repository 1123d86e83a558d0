"""Connecting to Ray: a local instance on a laptop, or an existing cluster, from the config's resources.

Ray always runs with token authentication. Ray ships pickled tasks and its GCS and raylet listen on every
interface (also with ``_node_ip_address="127.0.0.1"``), so without a token anyone who reaches the machine
could run code on it while a campaign runs. A local instance uses the token at Ray's default path
(``~/.ray/auth_token``), created here readable by its owner only when it is missing; ``RAY_AUTH_TOKEN`` or
``RAY_AUTH_TOKEN_PATH`` choose another. A cluster must have been started with ``RAY_AUTH_MODE=token`` and
the same token on every node (README, "On a Ray cluster").
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import ray

from discovery.config import ResourcesConfig
from discovery.errors import DiscoveryError

DEFAULT_TOKEN = Path("~/.ray/auth_token")  # where Ray looks when no variable names a token


def connect(resources: ResourcesConfig) -> None:
    """Start or join Ray once per process. ``address: None`` starts a local instance (one CPU per core);
    ``"auto"`` or ``"ray://host:10001"`` joins a running cluster (``ray start --head`` / ``ray start --address``)."""
    if ray.is_initialized():
        return
    require_token_auth()
    try:
        ray.init(address=resources.address, namespace=resources.namespace, include_dashboard=False,
                 dashboard_host="127.0.0.1", log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = (" (a cluster must run with RAY_AUTH_MODE=token and this machine needs its token: README, "
                "'On a Ray cluster')" if resources.address else "")
        raise DiscoveryError(f"cannot connect to Ray at {resources.address!r}: {exc}{hint}") from exc


def require_token_auth() -> Path | None:
    """Turn Ray's token authentication on for this process and the Ray processes it starts; refuse a request
    to turn it off. Returns the token file used (None when ``RAY_AUTH_TOKEN`` holds the token itself)."""
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    if mode != "token":
        raise DiscoveryError(f"RAY_AUTH_MODE={mode}: campaigns run Ray with token authentication only (an "
                             "unauthenticated Ray accepts pickled code from anyone who reaches it); unset it")
    os.environ["RAY_AUTH_MODE"] = "token"
    path = None
    if not os.environ.get("RAY_AUTH_TOKEN"):
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN).expanduser()
        if not path.exists():
            _write_token(path)
        elif path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
            path.chmod(0o600)  # a token Ray wrote earlier is readable by every local user
    _refresh_ray_config()
    return path


def _refresh_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE into its cached config when first imported: refresh it (as Ray's own
    ``_enable_token_auth`` does), so that a process that imported Ray earlier also sends the token."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _write_token(path: Path) -> None:
    """A new random token readable by its owner only (Ray itself would write one readable by everyone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use that one
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))


def workers(resources: ResourcesConfig) -> int:
    """Oracle workers: as configured, or one per CPU of the cluster."""
    if resources.oracle_workers:
        return resources.oracle_workers
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // max(resources.cpus_per_oracle, 1e-9)))
