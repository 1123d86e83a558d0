"""Ray runs with token authentication: a client without the token cannot join a running campaign's Ray."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from discovery.errors import DiscoveryError

CLIENT = "import ray; ray.init(address={address!r}); print('joined', int(ray.cluster_resources()['CPU']))"


def _client(address: str, **env: str) -> subprocess.CompletedProcess:
    """A Python process on this machine that tries to join the Ray instance at ``address``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    clean["RAY_NUM_REDIS_GET_RETRIES"] = "3"  # a refused client gives up after 3 tries, not 20 (~1 s each)
    return subprocess.run([sys.executable, "-c", CLIENT.format(address=address)], capture_output=True, text=True,
                          env={**clean, **env}, timeout=300)


@pytest.mark.ray
def test_an_unauthenticated_client_is_refused_by_a_running_campaign(ray_session, tmp_path):
    from agents.campaign import Campaign

    config = {"budget": 8, "proposer": {"kind": "table"}, "oracle": {"kind": "lookup"}, "tracking": {"mlflow": False}}
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run")
    try:
        campaign.ask(8)  # the campaign's actors are up and working
        address = ray_session.get_runtime_context().gcs_address
        home = tmp_path / "home"  # a client with no token anywhere (no variable, nothing at ~/.ray)
        home.mkdir()
        for refused in (_client(address, HOME=str(home)),
                        _client(address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64, HOME=str(home))):
            assert refused.returncode != 0 and "joined" not in refused.stdout
            assert "token" in refused.stderr.lower()  # refused for want of the token, not for another reason
        joined = _client(address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=os.environ["RAY_AUTH_TOKEN_PATH"])
        assert joined.returncode == 0 and "joined" in joined.stdout, joined.stderr[-2000:]
    finally:
        campaign.close()


def test_turning_authentication_off_is_refused(monkeypatch):
    from agents.runtime import require_token_auth

    monkeypatch.setenv("RAY_AUTH_MODE", "off")  # anything but "token"
    with pytest.raises(DiscoveryError, match="token authentication only"):
        require_token_auth()


def test_a_missing_token_is_created_readable_by_its_owner_only(monkeypatch, tmp_path):
    from agents.runtime import require_token_auth

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "ray" / "auth_token"))
    path = require_token_auth()
    assert path == tmp_path / "ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text()) == 64
    assert os.environ["RAY_AUTH_MODE"] == "token"
    token = path.read_text()
    assert require_token_auth() == path and path.read_text() == token  # an existing token is kept
