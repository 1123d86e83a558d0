import pytest

from discovery.errors import DiscoveryError
from discovery.oracle import Oracle, OracleSettings

pytestmark = pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")


def test_oracle_levels_and_failures_as_data(irmof1):
    oracle = Oracle(OracleSettings(charges="cif", first_cycles=20, max_cycles=20))
    result = oracle.evaluate(irmof1, ("geometry", "henry"))
    assert result.properties["geometry"]["pld"] > 2.4
    # the built MOF has no charges: henry fails with the reason recorded, geometry still ran
    assert "henry" in result.failures and "no charges" in result.failures["henry"]["message"]
    assert set(result.cpu_s) == {"geometry", "henry"}
    assert not result.ok


def test_henry_level_without_charges(irmof1):
    result = Oracle(OracleSettings(charges="none", first_cycles=20, max_cycles=20)).evaluate(irmof1, ("henry",))
    henry = result.properties["henry"]
    assert henry["kh_co2"] > henry["kh_n2"] > 0
    assert henry["cycles_co2"] == 20 and henry["unit_cells"] == [2, 2, 2]
    assert henry["protocol"]["cutoff_A"] == 12.8


def test_unknown_level_is_named(irmof1):
    with pytest.raises(DiscoveryError, match="flue"):
        Oracle().evaluate(irmof1, ("flue",))


def test_batch_carries_on_and_resumes(irmof1, tmp_path):
    from discovery.oracle import evaluate_files

    good = tmp_path / "irmof1.cif"
    irmof1.to_cif(good)
    bad = tmp_path / "broken.cif"
    bad.write_text("not a cif")
    out = tmp_path / "results.jsonl"
    settings = OracleSettings(charges="none", first_cycles=10, max_cycles=10)
    rows = evaluate_files([str(good), str(bad)], ("henry",), settings, out=str(out), workers=2, progress=False)
    assert rows[0]["properties"]["henry"]["kh_co2"] > 0
    assert "broken.cif" in rows[1]["failures"]["read"]["message"]
    again = evaluate_files([str(good), str(bad)], ("henry",), settings, out=str(out), workers=2, progress=False)
    assert again == rows  # nothing redone: both come from the saved results
    assert len(out.read_text().splitlines()) == 2
