"""Selection and resumption of the reference MD trajectories (no MD is run here)."""

import csv
import json

import pytest

from discovery.errors import DiscoveryError
from discovery.oracle.settings import OracleSettings
from discovery.oracle.transport.trajectories import build_trajectories, select_diverse

COLUMNS = ["id", "topology", "lcd", "pld", "density_g_cm3", "void_fraction", "valid"]


def _dataset(tmp_path, n=40):
    (tmp_path / "structures").mkdir(parents=True)
    with (tmp_path / "mofs.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for k in range(n):
            topo = ["pcu", "dia", "srs", "bcu"][k % 4]
            pld = 2.5 + 0.5 * k  # the first two cannot pass CO2
            w.writerow({"id": f"{topo}+N{k}+E1", "topology": topo, "lcd": pld + 2, "pld": pld,
                        "density_g_cm3": 0.4 + 0.02 * k, "void_fraction": 0.9 - 0.01 * k, "valid": k != 5})
    return tmp_path


def test_selection_is_diverse_and_co2_accessible(tmp_path):
    ds = _dataset(tmp_path)
    ids = select_diverse(ds, 8, seed=0)
    assert len(set(ids)) == 8
    assert not {"pcu+N0+E1", "dia+N1+E1", "srs+N5+E1"} & set(ids)  # PLD < 3.4 A, or invalid
    assert {i.split("+")[0] for i in ids} == {"pcu", "dia", "srs", "bcu"}  # every topology
    plds = sorted(2.5 + 0.5 * int(i.split("+N")[1].split("+")[0]) for i in ids)
    assert plds[0] < 6 and plds[-1] > 18  # both ends of the pore-size range
    with pytest.raises(DiscoveryError, match="only"):
        select_diverse(ds, 100)


def test_a_finished_selection_is_not_run_again(tmp_path):
    ds = _dataset(tmp_path / "ds")
    out = tmp_path / "traj"
    out.mkdir()
    (out / "ids.txt").write_text("pcu+N4+E1\nbcu+N7+E1\n")  # kept: the run resumes with its own selection
    rows = [{"structure": "pcu+N4+E1", "diffusivity": {"co2_m2_s": 1e-8}},
            {"structure": "bcu+N7+E1", "failures": {"diffusivity": {"reason": "x"}}}]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"structure": "cut sh')
    summary = build_trajectories(ds, out, OracleSettings(charges="none"), n=60, progress=False)
    assert summary == {"selected": 2, "with_trajectory": 1, "failed": 1, "run_now": 0, "out": str(out),
                       "cpu_hours": 0.0}
