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
