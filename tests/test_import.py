"""Real MOFs into a dataset directory (discovery.library.importer): named reasons, resumable, the layout of a
design-space build."""

from __future__ import annotations

import csv
import json

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from discovery.library.importer import core_mof_names, import_structures, unpack_core_mof


def test_a_cif_folder_is_imported_with_named_reasons_and_resumes(tmp_path, irmof1):
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    irmof1.to_cif(cifs / "IRMOF-1 (mine).cif")
    (cifs / "broken.cif").write_text("data_x\n_cell_length_a 10\n")
    disordered = Structure(Lattice.cubic(12.0), [{"Zn": 0.5, "Cu": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(disordered).write_file(cifs / "disordered.cif")
    paths = sorted(cifs.glob("*.cif"))
    summary = import_structures(paths, tmp_path / "ds", "mine", workers=1, progress=False)
    assert summary["attempted"] == 3 and summary["valid"] == 1
    assert summary["failures"] == {"unreadable": 1, "disorder": 1}
    rows = list(csv.DictReader((tmp_path / "ds" / "mofs.csv").read_text().splitlines()))
    assert [r["id"] for r in rows] == ["IRMOF-1__mine_"] and rows[0]["metals"] == "Zn"
    assert float(rows[0]["pld"]) > 5 and rows[0]["recipe"] == "" and rows[0]["topology"] == "pcu"  # decomposed
    record = json.loads((tmp_path / "ds" / "structures" / "IRMOF-1__mine_.json").read_text())
    assert record["provenance"]["source"] == "mine:IRMOF-1 (mine).cif"
    assert sorted({b["bb_id"] for b in record["cg"]["beads"]}) == ["E14", "N16"] and len(record["cg"]["beads"]) == 4
    assert summary["decomposition"]["reassembled"] == 1 and summary["decomposition"]["topologies"] == {"pcu": 1}
    assert summary["mofchecker"]["n"] == 1 and summary["mofchecker"]["valid"] == 1  # IRMOF-1 passes MOFChecker too
    reasons = {r["id"]: r["reason"] for r in csv.DictReader((tmp_path / "ds" / "failures.csv").read_text().splitlines())}
    assert reasons == {"broken": "unreadable", "disordered": "disorder"}
    again = import_structures(paths, tmp_path / "ds", "mine", workers=1, progress=False)
    assert again["new_this_run"] == 0 and again["valid"] == 1  # resumed: nothing imported twice


def test_core_mof_sample_is_seeded_and_unpacked(tmp_path):
    names = core_mof_names("2019-ASR", limit=3, seed=4)
    assert names == core_mof_names("2019-ASR", limit=3, seed=4) != core_mof_names("2019-ASR", limit=3, seed=5)
    assert len(core_mof_names("2019-ASR")) == 12020
    first = core_mof_names("2019-ASR")[:1]
    (path,) = unpack_core_mof("2019-ASR", first, tmp_path)
    assert path.name == f"{first[0]}.cif" and "_cell_length_a" in path.read_text()
    with pytest.raises(Exception, match="unknown CoRE MOF subset"):
        core_mof_names("2020")


def test_refused_structures_are_cut_only_on_request(tmp_path, irmof1):
    # a lone O in the pore: readable, refused by the checks (isolated); cutting it measures decomposition
    s = irmof1.structure.copy()
    s.append("O", s.lattice.get_cartesian_coords([0.5, 0.5, 0.5]), coords_are_cartesian=True)
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    CifWriter(s).write_file(cifs / "lone.cif")
    paths = [cifs / "lone.cif"]
    fast = import_structures(paths, tmp_path / "fast", "mine", workers=1, progress=False)
    assert fast["valid"] == 0 and "decomposition_of_all_read" not in fast
    (row,) = [json.loads(line) for line in (tmp_path / "fast" / "results.jsonl").read_text().splitlines()]
    assert "decomposition" not in row
    full = import_structures(paths, tmp_path / "full", "mine", workers=1, progress=False, decompose_refused=True)
    assert full["decomposition_of_all_read"]["n"] == 1
    assert full["decomposition_of_all_read"]["topologies"] == {"pcu": 1}  # the lone O left as a guest
