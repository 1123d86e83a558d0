import json

import pytest

from discovery.errors import DiscoveryError
from discovery.oracle.core import Oracle, OracleSettings

pytestmark = pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")


def test_oracle_levels_and_failures_as_data(irmof1):
    oracle = Oracle(OracleSettings(charges="cif", first_cycles=20, max_cycles=20))
    result = oracle.evaluate(irmof1, ("geometry", "henry"))
    assert result.properties["geometry"]["pld_A"] > 2.4
    # the built MOF has no charges: henry fails with the reason recorded, geometry still ran
    assert "henry" in result.failures and "no charges" in result.failures["henry"]["message"]
    assert set(result.cpu_s) == {"geometry", "henry"}
    assert not result.ok


def test_henry_level_without_charges(irmof1):
    settings = OracleSettings(charges="none", first_cycles=20, max_cycles=20, qst_cycles=20)
    record = Oracle(settings).evaluate(irmof1, ("henry",)).to_dict()
    henry = record["henry"]
    assert henry["co2"]["kh_mol_kg_pa"] > henry["n2"]["kh_mol_kg_pa"] > 0
    assert henry["co2"]["cycles"] == 20 and henry["box_copies"] == 8 and henry["blocked_pockets"] == 0
    assert 5.0 < henry["co2"]["qst_kj_mol"] < 40.0  # physisorption of CO2 in a Zn carboxylate
    assert record["settings"]["protocol"]["cutoff_A"] == 12.8 and record["settings"]["charges"] == "none"
    assert record["versions"]["raspalib"] == "3.1.0"
    assert henry["co2"]["target"] == henry["n2"]["target"] == 0.05  # each K_H says whether it met its target
    assert record["converged"] is (henry["co2"]["converged"] and henry["n2"]["converged"])


def test_flue_gas_and_working_capacity(irmof1):
    settings = OracleSettings(charges="none", gcmc_init_cycles=10, gcmc_first_cycles=30, gcmc_max_cycles=30)
    record = Oracle(settings).evaluate(irmof1, ("working_capacity",)).to_dict()
    flue, wc = record["flue_gas"], record["working_capacity"]  # the flue-gas step is run and kept
    assert flue["co2_mol_kg"] > 0 and flue["n2_mol_kg"] >= 0 and flue["cycles"] == 30
    assert flue["mole_fractions"] == {"CO2": 0.15, "N2": 0.85}
    assert wc["co2_mol_kg"] == pytest.approx(flue["co2_mol_kg"] - wc["desorption_co2_mol_kg"])
    assert wc["desorption_temperature_K"] == 363.0 and wc["desorption_pressure_pa"] == 1e4
    assert flue["target"] == wc["desorption_target"] == 0.05  # each GCMC run says whether it met its target
    assert record["converged"] is (flue["converged"] and wc["desorption_converged"])


def test_unconverged_interval_reaches_the_campaign_record(irmof1):
    """A K_H the cycle cap left above its target is flagged in the oracle record, and the flag survives into
    the campaign's result event (``Campaign.record_result``)."""
    from types import SimpleNamespace

    from discovery.campaign.contracts import Candidate
    from discovery.campaign.core import Campaign
    from discovery.campaign.oracles import SimulationOracle
    from discovery.config import OracleConfig

    config = OracleConfig(properties=("henry",), charges="none", target=0.001, first_cycles=10, max_cycles=10,
                          qst_cycles=0)
    outcome = SimulationOracle(config).evaluate(Candidate("irmof1", irmof1.to_json()))
    co2 = outcome.record["henry"]["co2"]
    assert outcome.status == "ok" and not co2["converged"] and co2["ci95"] / co2["kh_mol_kg_pa"] > 0.001
    assert outcome.record["converged"] is False and "henry.co2" in outcome.record["unconverged"]
    events: list = []
    stub = SimpleNamespace(state=SimpleNamespace(record=events.append, rounds={}, stage_of=lambda cid: "full"),
                           _finished=True)
    Campaign.record_result(stub, "irmof1", outcome)
    assert events[0]["oracle"]["converged"] is False and events[0]["oracle"]["henry"]["co2"]["converged"] is False


def test_evaluate_line_flags_an_interval_above_its_target():
    from agents.cli.oracle import _evaluate_line

    henry = {"co2": {"kh_mol_kg_pa": 1e-4, "ci95": 1.55e-5, "cycles": 5000, "converged": False, "target": 0.05},
             "n2": {"kh_mol_kg_pa": 1e-6, "ci95": 2e-8, "cycles": 500, "converged": True, "target": 0.05}}
    line = _evaluate_line({"structure": "znmof74", "henry": henry, "converged": False})
    assert "mol/kg/Pa (not converged: 15.5 % > 5 %)," in line and line.count("not converged") == 1
    old = {"structure": "old", "henry": {g: {k: v for k, v in e.items() if k not in ("converged", "target")}
                                         for g, e in henry.items()}}
    assert "not converged" not in _evaluate_line(old)  # a record saved before the flag, without settings: unknown
    old["settings"] = {"target": 0.05}  # with them (a reused --out result): judged by its interval
    assert "(not converged: 15.5 % > 5 %)" in _evaluate_line(old) and "K_H(N2) 1.000e-06;" in _evaluate_line(old)


def test_unknown_level_is_named(irmof1):
    with pytest.raises(DiscoveryError, match="flue"):
        Oracle().evaluate(irmof1, ("flue",))


def test_batch_carries_on_and_resumes(irmof1, tmp_path):
    from discovery.oracle.batch import evaluate_files

    good = tmp_path / "irmof1.cif"
    irmof1.to_cif(good)
    bad = tmp_path / "broken.cif"
    bad.write_text("not a cif")
    out = tmp_path / "results.jsonl"
    settings = OracleSettings(charges="none", first_cycles=10, max_cycles=10, qst_cycles=10)
    rows = evaluate_files([str(good), str(bad)], ("henry",), settings, out=str(out), workers=2, progress=False)
    assert rows[0]["henry"]["co2"]["kh_mol_kg_pa"] > 0
    assert "broken.cif" in rows[1]["failures"]["read"]["message"]
    again = evaluate_files([str(good), str(bad)], ("henry",), settings, out=str(out), workers=2, progress=False)
    assert all(r["reused"] for r in again)  # nothing redone: both come from the saved results
    assert [{k: v for k, v in r.items() if k != "reused"} for r in again] == json.loads(json.dumps(rows))
    assert len(out.read_text().splitlines()) == 2


def test_resume_recomputes_what_changed(irmof1, tmp_path):
    """``evaluate --out`` reruns: other levels, other charges, a fixed CIF are computed again; the same inputs
    are reused (and say so); a failure is retried only on request."""
    from discovery.oracle.batch import evaluate_files

    good, bad, out = tmp_path / "irmof1.cif", tmp_path / "broken.cif", tmp_path / "results.jsonl"
    irmof1.to_cif(good)
    bad.write_text("not a cif")
    files = [str(good), str(bad)]
    none = OracleSettings(charges="none", first_cycles=10, max_cycles=10, qst_cycles=0)

    def run(levels, settings, **kw):
        return evaluate_files(files, levels, settings, out=str(out), workers=2, progress=False, **kw)

    first = run(("geometry",), none)
    assert not any("reused" in r for r in first) and first[1]["failures"]
    assert all("reused" in r for r in run(("geometry",), none))
    assert "reused" in run(("geometry",), none, retry_failed=True)[0]
    assert "reused" not in run(("geometry",), none, retry_failed=True)[1]  # the failure, computed again
    levels = run(("geometry", "henry"), none)
    assert not any("reused" in r for r in levels) and levels[0]["henry"]["co2"]["kh_mol_kg_pa"] > 0
    eqeq = run(("geometry", "henry"), OracleSettings(charges="eqeq", first_cycles=10, max_cycles=10, qst_cycles=0))
    assert "reused" not in eqeq[0] and eqeq[0]["settings"]["charges"] == "eqeq"
    bad.write_text(good.read_text() + "# fixed by hand\n")  # the broken CIF, fixed
    fixed = run(("geometry", "henry"), none)
    assert "reused" in fixed[0] and "reused" not in fixed[1] and not fixed[1].get("failures")


def test_out_must_be_a_results_file(irmof1, tmp_path):
    from discovery.oracle.batch import evaluate_files

    cif = tmp_path / "irmof1.cif"
    irmof1.to_cif(cif)
    before = cif.read_bytes()
    with pytest.raises(DiscoveryError, match="not a results file"):
        evaluate_files([str(cif)], ("geometry",), OracleSettings(charges="none"), out=str(cif), progress=False)
    assert cif.read_bytes() == before
    with pytest.raises(DiscoveryError, match="is a folder"):
        evaluate_files([str(cif)], ("geometry",), OracleSettings(charges="none"), out=str(tmp_path), progress=False)


def test_diffusivity_level_writes_its_trajectory(irmof1, tmp_path):
    settings = OracleSettings(charges="none", md_guests=2, md_production_ps=2.0, trajectories=str(tmp_path))
    record = Oracle(settings).evaluate(irmof1, ("diffusivity",)).to_dict()
    d = record["diffusivity"]
    assert set(d) >= {"co2_m2_s", "ci95", "converged", "trajectory"} and d["n_guests"] == 2
    assert d["converged"] in (True, False) and (tmp_path / d["trajectory"].split("/")[-1]).exists()
    assert record["cpu_s"]["diffusivity"] > 0


def test_settings_are_checked_and_every_one_is_recorded(irmof1):
    from dataclasses import fields

    from discovery.fields import SettingError

    with pytest.raises(SettingError, match=r"^target: 5 is above the maximum 1.0"):
        OracleSettings(target=5)
    with pytest.raises(SettingError, match=r"^charges: 'ddec' is not one of auto, cif, eqeq, none"):
        OracleSettings(charges="ddec")
    settings = OracleSettings(charges="none", md_guests=3, temperature=310.0, block_pockets=False, seed=4)
    record = Oracle(settings).evaluate(irmof1, ("geometry",)).to_dict()
    assert {f.name: record["settings"][f.name] for f in fields(OracleSettings)} == {
        f.name: getattr(settings, f.name) for f in fields(OracleSettings)}
    assert "protocol" in record["settings"]


def test_box_and_charges_belong_to_the_structure_asked_about():
    import numpy as np
    from pymatgen.core import Lattice, Structure

    from discovery.structures.mof import MOF

    def toy(a: float, q: float) -> MOF:
        return MOF(id="toy", structure=Structure(Lattice.cubic(a), ["Zn", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                   charges=np.array([q, -q]))

    oracle = Oracle(OracleSettings(charges="cif", block_pockets=False))
    small, large = toy(10.0, 0.5), toy(30.0, 0.5)  # the same id: only the content tells them apart
    assert oracle.box(small) is oracle.box(small)  # the levels of one structure share its box
    assert oracle.box(small).copies == 22 and oracle.box(large).copies == 1
    assert oracle.box(small).copies == 22  # back to the first structure: its own box again
    assert oracle.charges(small).tolist() == [0.5, -0.5]
    small.charges = np.array([0.2, -0.2])  # edited in place
    assert oracle.charges(small).tolist() == [0.2, -0.2] and oracle.box(small).charges.max() == 0.2


def test_cpu_seconds_counts_finished_children():
    import subprocess
    import sys
    import time

    from discovery.clock import cpu_seconds

    t0, own0 = cpu_seconds(), time.process_time()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert (cpu_seconds() - t0) - (time.process_time() - own0) > 0.1  # the child's CPU time, Zeo++'s case


def test_a_refused_structure_is_simulated_on_request_and_the_finding_recorded(irmof1, tmp_path):
    """ZIF-90's published CIF has C-H pairs at 0.69 A: the overlap check refuses such a file, and
    ``--skip-check overlap`` simulates it as published, recording what the check found."""
    import json

    from agents.cli.main import main

    crowded = tmp_path / "crowded.cif"
    irmof1.to_cif(crowded)
    lines = crowded.read_text().splitlines()
    h = next(line for line in lines if line.split()[:2][-1:] == ["H"])
    label, el, x, y, z = h.split()[:5]
    lines.append(f" C99 C {float(x) + 0.05:.6f} {y} {z}")  # a C 0.66 A from an H: overlapping, as in ZIF-90
    crowded.write_text("\n".join(l for l in lines if not l.startswith("_chemical_formula_sum")) + "\n")
    base = ["evaluate", str(crowded), "--properties", "henry", "--cycles", "10", "--qst-cycles", "0",
            "--charges", "none", "--no-block-pockets", "--json"]
    assert main(base) == 1  # refused: the overlap check failed
    out = tmp_path / "r.jsonl"
    assert main([*base, "--skip-check", "overlap", "--out", str(out)]) == 0
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["henry"]["co2"]["kh_mol_kg_pa"] > 0 and "overlap" in record["skipped_checks"]
    assert record["settings"]["skip_checks"] == ["overlap"]
