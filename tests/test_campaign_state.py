"""The campaign's event log: replay rebuilds the state; a line cut short by a kill is dropped."""

import pytest

from discovery.campaign.state import EVENTS, CampaignState
from discovery.config import load_config
from discovery.errors import DiscoveryError


def _state(tmp_path):
    config = load_config({"budget": 4, "batch_size": 2, "tracking": {"mlflow": False}})
    st = CampaignState.create(tmp_path / "run", config)
    cands = [{"id": f"c{i}", "recipe": f"c{i}", "origin": "table", "status": "valid"} for i in range(4)]
    cands.append({"id": "bad", "recipe": "bad", "origin": "table", "status": "invalid", "reason": "overlap"})
    st.record({"type": "proposed", "round": 0, "candidates": cands})
    st.record({"type": "selected", "round": 0, "ids": ["c0", "c1"], "strategy": "random", "model_version": None})
    st.record({"type": "result", "id": "c0", "status": "ok", "values": {"log10_kh_co2": -5.0}})
    return st


def test_replay_rebuilds_the_state(tmp_path):
    st = _state(tmp_path)
    st.close()
    again = CampaignState.open(tmp_path / "run")
    assert again.pending() == ["c1"]
    assert again.selectable() == ["c2", "c3"]  # the invalid one is never selectable
    assert again.values(["c0"], ["log10_kh_co2"]).tolist() == [[-5.0]]
    assert again.budget_left == 2 and not again.done
    assert again.complete_through(-1) and not again.complete_through(0)
    again.close()


def test_a_line_cut_short_is_dropped_and_the_log_goes_on(tmp_path):
    st = _state(tmp_path)
    st.close()
    with open(tmp_path / "run" / EVENTS, "a") as fh:
        fh.write('{"type": "result", "id": "c1", "sta')  # the driver was killed mid-write
    again = CampaignState.open(tmp_path / "run")
    assert "c1" not in again.results
    again.record({"type": "result", "id": "c1", "status": "failed", "values": {}, "reason": "timeout"})
    again.close()
    final = CampaignState.open(tmp_path / "run")
    assert final.results["c1"]["reason"] == "timeout" and final.pending() == []
    final.close()


def test_existing_run_dir_is_not_overwritten(tmp_path):
    _state(tmp_path).close()
    with pytest.raises(DiscoveryError, match="resume"):
        CampaignState.create(tmp_path / "run", load_config({}))
    with pytest.raises(DiscoveryError, match="not a campaign"):
        CampaignState.open(tmp_path)


def test_budget_can_grow_not_shrink_below_what_was_chosen(tmp_path):
    st = _state(tmp_path)
    with pytest.raises(DiscoveryError, match="below"):
        st.extend_budget(1)
    st.extend_budget(10)
    st.close()
    again = CampaignState.open(tmp_path / "run")
    assert again.config.budget == 10 and again.budget_left == 8
    again.close()


def test_report_leaves_a_torn_log_unchanged(tmp_path, capsys):
    """Readers never write: ``discovery report`` on a log whose last line is being written (or was torn by a
    kill) reads the complete lines and leaves every byte as it was; only resume repairs it."""
    from agents.cli.main import main

    st = _state(tmp_path)
    st.close()
    with open(tmp_path / "run" / EVENTS, "a") as fh:
        fh.write('{"type": "result", "id": "c1", "sta')
    before = (tmp_path / "run" / EVENTS).read_bytes()
    assert main(["report", str(tmp_path / "run"), "--json"]) == 0
    assert '"evaluated": 1' in capsys.readouterr().out
    assert (tmp_path / "run" / EVENTS).read_bytes() == before
    reader = CampaignState.open(tmp_path / "run", writable=False)
    assert "c0" in reader.results and (tmp_path / "run" / EVENTS).read_bytes() == before
    with pytest.raises(DiscoveryError, match="closed"):
        reader.record({"type": "result", "id": "c1", "status": "ok", "values": {}})
    CampaignState.open(tmp_path / "run").close()  # a writer cuts the torn line
    assert (tmp_path / "run" / EVENTS).read_bytes() == before[: before.rfind(b"\n") + 1]


def test_report_and_round_metrics_show_what_the_de_novo_share_found(tmp_path):
    from discovery.campaign.report import denovo_metrics, objective_values, origin_counts, report

    config = load_config({"budget": 4, "batch_size": 2, "tracking": {"mlflow": False}})
    st = CampaignState.create(tmp_path / "run", config)
    origins = ["diffusion-edit", "diffusion-denovo", "diffusion-denovo", "diffusion-edit"]
    st.record({"type": "proposed", "round": 0, "candidates": [
        {"id": f"c{i}", "recipe": f"c{i}", "origin": o, "status": "valid"} for i, o in enumerate(origins)]})
    st.record({"type": "selected", "round": 0, "ids": ["c0", "c1", "c2"], "strategy": "random", "model_version": None})
    for cid, value in (("c0", -5.0), ("c1", -4.2), ("c2", -6.0)):
        st.record({"type": "result", "id": cid, "status": "ok", "values": {"log10_kh_co2": value}})
    by_origin = origin_counts(st)
    assert by_origin["diffusion-denovo"] == {"proposed": 2, "valid": 2, "evaluated": 2, "best_log10_kh_co2": -4.2}
    assert by_origin["diffusion-edit"]["evaluated"] == 1 and by_origin["diffusion-edit"]["best_log10_kh_co2"] == -5.0
    assert report(st)["by_origin"] == by_origin
    ok = ["c0", "c1", "c2"]
    metrics = denovo_metrics(st, ok, objective_values(st, ok), top_threshold=-4.5)
    assert metrics == {"denovo_evaluated": 2, "best_log10_kh_co2_denovo": -4.2, "top_found_denovo": 1}
    st.close()
    plain = _state(tmp_path / "other")
    assert denovo_metrics(plain, ["c0"], objective_values(plain, ["c0"]), -4.5) == {}  # nothing de novo
    plain.close()
