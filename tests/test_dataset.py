import csv
import itertools
import json

import pytest

from discovery.library.dataset import BuildOptions, DatasetBuilder
from discovery.library.designspace import DesignSpace, Sampler
from discovery.errors import DatasetError


def _read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sampler():
    return Sampler()


def test_same_seed_same_recipes(sampler):
    a = [str(r) for r in itertools.islice(sampler.recipes(7), 30)]
    b = [str(r) for r in itertools.islice(sampler.recipes(7), 30)]
    c = [str(r) for r in itertools.islice(sampler.recipes(8), 30)]
    assert a == b and a != c
    assert len(set(a)) == 30  # distinct


def test_sampled_recipes_are_compatible_and_within_limits(sampler, assembler):
    for recipe in itertools.islice(sampler.recipes(3), 20):
        compat = assembler.check(recipe)
        assert compat.compatible, compat.reason
        net = sampler.topologies.info(recipe.topology)
        assert net.n_nodes <= sampler.space.max_net_nodes
        assert sampler.estimated_atoms(net, recipe) <= sampler.space.max_atoms
        assert any(sampler.bbs.get(b).has_metal for b in recipe.node_bbs)
        for b in recipe.node_bbs:
            metals = set(sampler.bbs.get(b).metals)
            assert metals <= set(sampler.space.metals)


def test_build_writes_table_and_resumes(tmp_path, sampler):
    builder = DatasetBuilder(tmp_path / "ds", sampler=sampler)
    first = builder.build(BuildOptions(size=2, seed=1, workers=1, progress=False))
    assert first["attempted"] == 2
    # "interrupt": a cut-off line at the end of the log is ignored, and a larger build resumes
    with (tmp_path / "ds" / "results.jsonl").open("a") as f:
        f.write('{"recipe": "cut sh')
    second = builder.build(BuildOptions(size=3, seed=1, workers=1, progress=False))
    assert second["attempted"] == 3 and second["new_this_run"] == 1
    rows = _read_csv(tmp_path / "ds" / "mofs.csv")
    assert len(rows) == second["valid"]
    for row in rows:
        assert (tmp_path / "ds" / "structures" / f"{row['id']}.cif").exists()
        assert int(row["n_atoms"]) > 0 and float(row["pld"]) >= 2.4
    failures = _read_csv(tmp_path / "ds" / "failures.csv")
    assert sum(json.loads((tmp_path / "ds" / "summary.json").read_text())["failures"].values()) == len(failures)
    checked = json.loads((tmp_path / "ds" / "summary.json").read_text())["mofchecker"]  # MOFChecker beside ours
    assert checked["n"] >= second["valid"] and checked["agreement_with_project"]["n"] == checked["n"]


def test_resume_with_other_seed_is_refused(tmp_path, sampler):
    builder = DatasetBuilder(tmp_path / "ds", sampler=sampler)
    builder._prepare(BuildOptions(size=1, seed=1))
    with pytest.raises(DatasetError, match="seed"):
        builder._prepare(BuildOptions(size=1, seed=2))


def test_design_space_settings_are_validated():
    with pytest.raises(DatasetError, match="rmsd_threshold"):
        DesignSpace(rmsd_threshold=0.9)


def test_same_seed_same_dataset(tmp_path, sampler):
    tables = []
    for name in ("a", "b"):
        builder = DatasetBuilder(tmp_path / name, sampler=sampler)
        builder.build(BuildOptions(size=2, seed=11, workers=1, progress=False))
        tables.append((tmp_path / name / "mofs.csv").read_text() + (tmp_path / name / "failures.csv").read_text())
    assert tables[0] == tables[1]
    assert tables[0].count("\n") >= 3  # header lines plus two recipes


def test_a_second_build_in_the_same_directory_is_refused(tmp_path, sampler):
    from discovery.library.dataset import exclusive

    (tmp_path / "ds").mkdir()
    with exclusive(tmp_path / "ds"):
        with pytest.raises(DatasetError, match="another build"):
            DatasetBuilder(tmp_path / "ds", sampler=sampler).build(BuildOptions(size=1, seed=1, progress=False))


def test_asking_for_more_recipes_than_the_space_holds_is_refused(tmp_path):
    small = Sampler(DesignSpace(max_net_nodes=1, max_edge_atoms=4))  # one net, three tiny linkers
    n = sum(1 for _ in small.recipes(0))
    with pytest.raises(DatasetError, match=f"only {n} distinct recipes"):
        DatasetBuilder(tmp_path / "ds", sampler=small).build(BuildOptions(size=n + 1, seed=0, progress=False))


def test_a_pool_tables_mofs_are_rebuilt_byte_for_byte_and_exported_with_its_descriptors(tmp_path, capsys):
    """``dataset rebuild``: the committed table's MOFs come back as the CIFs a build wrote (so saved labels
    resume), and an export of them carries the table's descriptors and CG views, nothing recomputed."""
    import gzip

    import numpy as np

    from agents.cli.main import main
    from discovery.errors import DiscoveryError
    from discovery.library.assembly import Recipe, default_assembler
    from discovery.library.rebuild import rebuild_dataset
    from discovery.pool import POOL_TABLE, POOLS, read_table
    from surrogates.adsorption.data import export_table

    ids = ["cdl+N17+E38", "cds+N17+E20"]
    rows = {r["id"]: r for r in read_table(POOL_TABLE)[1] if r["id"] in ids}
    summary = rebuild_dataset("design", tmp_path / "ds", ids=ids, workers=1, progress=False)
    assert summary == {"source": "pool table design", "structures": 2, "new_this_run": 2, "failed": {}}
    built = tmp_path / "built.cif"
    default_assembler().assemble(Recipe.parse(ids[0])).to_cif(built)
    assert (tmp_path / "ds" / "structures" / f"{ids[0]}.cif").read_bytes() == built.read_bytes()
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    assert main(["dataset", "rebuild", "design", "--out", str(tmp_path / "ds"), "--ids", str(tmp_path / "ids.txt"),
                 "--json"]) == 0  # resumed: nothing new
    assert json.loads(capsys.readouterr().out)["new_this_run"] == 0

    # stand-in labels (the oracle's own are tested elsewhere): one record per MOF, as `dataset label` writes
    record = {"henry": {"co2": {"kh_mol_kg_pa": 1e-5}, "n2": {"kh_mol_kg_pa": 1e-6}}, "failures": {}}
    (tmp_path / "ds" / "labels").mkdir()
    (tmp_path / "ds" / "labels" / "eqeq.jsonl").write_text(
        "".join(json.dumps({"structure": i, **record}) + "\n" for i in ids))
    header = export_table(tmp_path / "ds", tmp_path / "t.jsonl.gz", charges="eqeq")
    assert header["structures"] == "pool table design" and header["charges"] == "eqeq"
    with gzip.open(tmp_path / "t.jsonl.gz", "rt") as fh:
        exported = {r["id"]: r for r in map(json.loads, list(fh)[1:])}
    for i in ids:
        assert exported[i]["descriptors"] == rows[i]["descriptors"]
        cg, old = exported[i]["cg"], rows[i]["cg"]  # the same CG view, to the assembler's last digits
        assert [b["bb_id"] for b in cg["beads"]] == [b["bb_id"] for b in old["beads"]]
        shift = np.subtract([b["frac_coords"] for b in cg["beads"]], [b["frac_coords"] for b in old["beads"]])
        assert np.abs(shift - np.round(shift)).max() < 1e-3  # periodic: 0.99995 is 0.0001's neighbour
        assert exported[i]["labels"]["log10_kh_co2"] == pytest.approx(-5.0)

    with pytest.raises(DiscoveryError, match="1 id\\(s\\) not in"):
        rebuild_dataset("design", tmp_path / "other", ids=["pcu+N1+E1"], progress=False)
    with pytest.raises(DiscoveryError, match="not design-space recipes"):
        rebuild_dataset("core", tmp_path / "other", ids=[read_table(POOLS["core"])[1][0]["id"]], progress=False)
