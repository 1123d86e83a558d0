"""The multi-fidelity funnel (``oracle.screen``): picks are screened at cheap levels first, and the planner
promotes screened MOFs to the expensive levels by acquisition per CPU-second, within a CPU budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from discovery.campaign import Campaign, Candidate, Oracle
from discovery.campaign.oracles import LookupOracle
from discovery.campaign.parts import load_table
from discovery.campaign.planner import Planner, PlannerConfig
from discovery.campaign.state import CampaignState
from discovery.config import ConfigError, load_config
from surrogates.adsorption.botorch_model import TableEnsembleModel

# screening (henry) costs 5 CPU-s, a promotion (flue gas) 100: one full evaluation's worth buys 21 screens
FUNNEL = {"budget": 3, "batch_size": 8, "proposer": {"kind": "table", "candidates_per_round": 24},
          "oracle": {"kind": "lookup", "properties": ["henry", "flue_gas"], "screen": ["henry"]},
          "surrogate": {"members": 2, "epochs": 4, "retrain_every": 8, "min_train": 10},
          "planner": {"minimum": {"log10_selectivity": 0.5}, "costs": {"henry": 5.0, "flue_gas": 100.0}},
          "tracking": {"mlflow": False}}


class LevelsTestOracle(Oracle):
    """Test double: the lookup oracle, recording which levels each call asked for."""

    def __init__(self, config):
        self.lookup, self.calls = LookupOracle(load_table(config)), []

    def evaluate(self, candidate: Candidate):
        self.calls.append((candidate.id, candidate.levels))
        return self.lookup.evaluate(candidate)


def test_a_funnel_screens_first_and_promotes_within_a_cpu_budget(tmp_path):
    config = load_config(FUNNEL)
    oracle = LevelsTestOracle(config)
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run", oracle=oracle)
    list(campaign.rounds())
    st = campaign.state
    picks = st.picks()
    screened_in = {i: r for r, i, s in picks if s == "screen"}
    promoted = [(r, i) for r, i, s in picks if s == "promote"]
    assert promoted, "nothing was promoted"
    # before the first model, picks are random screens (they train it); no random promotion
    assert all(s == "screen" for r, _, s in picks if st.rounds[r].strategy == "random")
    # a promotion follows its MOF's screen, and only MOFs whose measured selectivity passed are promoted
    assert all(i in screened_in and screened_in[i] < r for r, i in promoted)
    values = st.values([i for _, i in promoted], ["log10_kh_co2", "log10_kh_n2"])
    assert (values[:, 0] - values[:, 1] >= 0.5).all()
    # the oracle ran the screen's levels, then the rest
    assert {levels for _, levels in oracle.calls} == {("henry",), ("flue_gas",)}
    assert sum(levels == ("flue_gas",) for _, levels in oracle.calls) == len(promoted)
    # the budget is CPU: 5 / 105 of a unit per screen, 100 / 105 per promotion; it ends when what is left
    # cannot pay a promotion (a screen is worth nothing without one)
    units = sum(5 / 105 if s == "screen" else 100 / 105 for _, _, s in picks)
    assert st.spent == pytest.approx(units) and 3 - 100 / 105 < st.spent <= 3 + 1e-9
    assert len(screened_in) > 5 * len(promoted)
    # a promoted MOF's final result holds its screen's values; a screened one is in the history as such
    for _, i in promoted:
        assert st.results[i]["stage"] == "promote" and st.results[i]["values"] == st.screens[i]["values"]
    history = campaign.history()
    assert set(history.status) <= {"ok", "failed", "screened"} and (history.status == "screened").any()
    report = campaign.report()
    assert report["counts"]["promoted"] == len(promoted) and report["counts"]["screened"] == len(screened_in)
    assert {e["status"] for e in report["evaluations"]} <= {"ok", "failed", "screened"}
    first = st.round_metrics[0]  # what MLflow logs per round: the screens count as oracle calls
    assert first["screened"] == 8 and first["promoted"] == 0 and first["budget_spent"] == pytest.approx(8 * 5 / 105)
    assert first["oracle_results_per_h"] > 0
    campaign.close()

    again = CampaignState.open(tmp_path / "run", writable=False)  # the log replays the stages
    assert again.picks() == picks and again.spent == pytest.approx(st.spent) and set(again.screens) == set(st.screens)
    assert again.budget_left == 0 and again.done


def test_a_screen_is_pending_until_answered_and_promotion_waits_for_the_round_structure(tmp_path):
    config = load_config(FUNNEL)
    st = CampaignState.create(tmp_path / "run", config)
    cands = [{"id": f"c{i}", "recipe": f"c{i}", "origin": "table", "status": "valid"} for i in range(3)]
    st.record({"type": "proposed", "round": 0, "candidates": cands})
    st.record({"type": "selected", "round": 0, "ids": ["c0", "c1"], "strategy": "random", "model_version": None,
               "stages": {"c0": "screen", "c1": "screen"}})
    assert st.pending() == ["c0", "c1"] and st.stage_of("c0") == "screen"
    st.record({"type": "result", "id": "c0", "stage": "screen", "status": "ok",
               "values": {"log10_kh_co2": -4.0, "log10_kh_n2": -5.0}})
    st.record({"type": "result", "id": "c1", "stage": "screen", "status": "failed", "reason": "henry:Error"})
    assert st.pending() == [] and st.complete_through(0) and "c0" not in st.results
    assert st.results["c1"]["status"] == "failed"  # a failed screen is final
    assert st.promotable(1, 2) == [] and st.promotable(2, 2) == ["c0"]  # known to round 2 (LAG 2), not round 1
    st.record({"type": "selected", "round": 1, "ids": ["c0"], "strategy": "botorch", "model_version": 1,
               "stages": {"c0": "promote"}})
    assert st.pending() == ["c0"] and st.promotable(3, 2) == []
    # run() plans on a promotion planner.promotion_lag rounds later: its MD does not hold up the screening
    assert not st.complete_through(1) and st.complete_through(1, promote_lag=1)
    assert not st.known(4, 1, "promote", 2, promote_lag=2) and st.known(5, 1, "promote", 2, promote_lag=2)
    assert st.spent == pytest.approx(2 * 5 / 105 + 100 / 105)
    st.close()


def test_the_surrogate_holds_screened_values_fixed_and_the_planner_weighs_cost():
    from surrogates.adsorption.campaign_model import CampaignSurrogate

    class MembersTestModel:  # test double: an ensemble whose members disagree everywhere
        def predict(self, graphs):
            members = np.arange(3)[:, None, None] + np.zeros((3, len(graphs), 2))
            return type("P", (), {"members": members})()

    surrogate = CampaignSurrogate()
    surrogate.graphs = {i: object() for i in ("a", "b", "o")}
    surrogate.model = MembersTestModel()
    pinned = np.array([[-4.0, np.nan], [np.nan, np.nan]])
    model, X, X_obs = surrogate.botorch_inputs(["a", "b"], ["o"], np.array([[-5.0, -6.0]]), pinned)
    values = model.values.numpy()
    assert (values[:, 0, 0] == -4.0).all() and len(set(values[:, 0, 1])) == 3  # only the measured entry
    assert len(set(values[:, 1, 0])) == 3 and (values[:, 2] == [-5.0, -6.0]).all()

    # equal value, ten times the cost: the cheaper row is picked first
    same = TableEnsembleModel(torch.from_numpy(np.tile(np.random.default_rng(0).normal(size=(8, 1, 2)), (1, 2, 1))))
    rows = torch.arange(2, dtype=torch.float64).unsqueeze(-1)
    base = torch.tensor([[0.0]], dtype=torch.float64)
    for costs, first in (([10.0, 1.0], 1), ([1.0, 10.0], 0)):
        assert Planner(PlannerConfig()).select(same, rows, base, q=1, costs=np.array(costs)).rows == [first]


def test_probability_is_the_share_of_members_meeting_the_constraints_and_an_infeasible_baseline_works():
    values = np.zeros((4, 3, 2))
    values[:, :, 0] = [[0, 0, 2], [1, 0, 2], [1, 0, 2], [1, 0, 2]]  # row 0: 3 of 4 members above 0.5
    model = TableEnsembleModel(torch.from_numpy(values))
    X = torch.arange(3, dtype=torch.float64).unsqueeze(-1)
    planner = Planner(PlannerConfig(minimum=(("log10_kh_co2", 0.5),)))
    assert planner.probability(model, X, [("log10_kh_co2", 0.5)]).tolist() == [0.75, 0.0, 1.0]
    # every baseline point infeasible: BoTorch bounds the objective at points around the baseline's inputs,
    # which once indexed past the table's end
    picked = planner.select(model, X[:2], X[1:2], q=1).rows
    assert picked in ([0], [1])


@pytest.mark.parametrize("oracle, planner, message", [
    ({"screen": ["diffusivity"]}, {}, "not in oracle.properties"),
    ({"screen": ["geometry", "henry"]}, {}, "nothing is left to promote"),
    ({"screen": ["geometry"]}, {"costs": {"henry": 0}}, "positive"),
    ({"screen": ["geometry"]}, {"costs": {"gcmc": 5}}, "must be an oracle level"),
])
def test_bad_funnel_settings_are_named(oracle, planner, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"oracle": oracle, "planner": planner})
    with pytest.raises(ConfigError, match="ensemble"):
        load_config({"oracle": {"screen": ["geometry"]}, "surrogate": {"kind": "gp"}})


def test_the_funnel_on_ray_picks_as_in_process_and_runs_to_its_budget(ray_session, tmp_path):
    from agents.campaign import Campaign as RayCampaign

    config = {**FUNNEL, "budget": 2}
    picks = {}
    for name, cls in (("local", Campaign), ("ray", RayCampaign)):
        campaign = cls.from_config(config, run_dir=tmp_path / name)
        list(campaign.rounds())
        picks[name] = campaign.state.picks()
        campaign.close()
    assert picks["local"] == picks["ray"] and any(s == "promote" for _, _, s in picks["ray"])

    campaign = RayCampaign.from_config(config, run_dir=tmp_path / "async", track=False)
    campaign.run(progress=False)  # rounds planned ahead (LAG 2) while screens are evaluated
    st = campaign.state
    screened_in = {i: r for r, i, s in st.picks() if s == "screen"}
    assert st.done and all(screened_in[i] <= r - 2 for r, i, s in st.picks() if s == "promote")
    campaign.close()


def test_ask_and_tell_through_a_funnel(tmp_path):
    """An outside oracle is told each pick's stage and levels; its screen results make promotions possible."""
    config = load_config(FUNNEL)
    labels = {i: r["labels"] for i, r in load_table(config).items()}
    campaign = Campaign.from_config(config, run_dir=tmp_path / "run")
    asked = []
    for _ in range(8):
        batch = campaign.ask(8)
        asked += batch
        campaign.tell([{"id": a["id"], "values": {} if a["stage"] == "promote" else labels[a["id"]]} for a in batch])
        if any(a["stage"] == "promote" for a in batch) or not batch:
            break
    first = {a["id"]: a for a in asked[:8]}
    assert all(a["stage"] == "screen" and a["levels"] == ["henry"] for a in first.values())
    promoted = [a for a in asked if a["stage"] == "promote"]
    assert promoted and all(a["levels"] == ["flue_gas"] for a in promoted)
    assert all(campaign.state.results[a["id"]]["values"] == labels[a["id"]] for a in promoted)
    campaign.close()
