"""Connecting to Ray: a local instance on a laptop, or an existing cluster, from the config's resources."""

from __future__ import annotations

import os

import ray

from discovery.config import ResourcesConfig
from discovery.errors import DiscoveryError


def connect(resources: ResourcesConfig) -> None:
    """Start or join Ray once per process. ``address: None`` starts a local instance (one CPU per core);
    ``"auto"`` or ``"ray://host:10001"`` joins a running cluster (``ray start --head`` / ``ray start --address``)."""
    if ray.is_initialized():
        return
    if resources.address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local run needs no token under the home directory
    try:
        ray.init(address=resources.address, namespace=resources.namespace, include_dashboard=False,
                 log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DiscoveryError(f"cannot connect to Ray at {resources.address!r}: {exc}") from exc


def workers(resources: ResourcesConfig) -> int:
    """Oracle workers: as configured, or one per CPU of the cluster."""
    if resources.oracle_workers:
        return resources.oracle_workers
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // max(resources.cpus_per_oracle, 1e-9)))
