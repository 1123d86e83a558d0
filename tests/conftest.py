"""Shared fixtures: one assembled IRMOF-1-like MOF (pcu + Zn4O + benzene) for the whole session."""

from __future__ import annotations

import pytest

from discovery.library.assembly import Assembler

IRMOF1_RECIPE = "pcu+N16+E14"  # pcu net, Zn4O(CO2)6 node, C6H4 (benzene) edge: Zn4O(BDC)3


def pytest_configure(config) -> None:
    """Ray runs with token authentication in tests too; the test session's token lives in a temporary folder
    (inherited by the campaigns the tests start in subprocesses), not in the home directory."""
    import os
    import tempfile

    from agents.runtime import require_token_auth

    if not os.environ.get("RAY_AUTH_TOKEN_PATH") and not os.environ.get("RAY_AUTH_TOKEN"):
        os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.join(tempfile.mkdtemp(prefix="ray-token-"), "auth_token")
    require_token_auth()


@pytest.fixture(scope="session")
def assembler() -> Assembler:
    return Assembler()


@pytest.fixture(scope="session")
def irmof1(assembler):
    return assembler.assemble(IRMOF1_RECIPE)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) for every test that needs it (stack.md: ~3 s to start)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
