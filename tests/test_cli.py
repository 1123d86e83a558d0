import gzip
import json

import pytest

from agents.cli.main import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("bb", "topology", "assemble", "check", "geometry", "dataset", "benchmark"):
        assert command in out


def test_unknown_id_is_a_clear_error(capsys):
    assert main(["bb", "show", "N0"]) == 2
    assert "unknown building block 'N0'" in capsys.readouterr().err


def test_assemble_then_check(tmp_path, capsys):
    cif = tmp_path / "irmof1.cif"
    assert main(["assemble", "pcu+N16+E14", "--out", str(cif), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_atoms"] == 53 and cif.exists() and (tmp_path / "irmof1.json").exists()
    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif")
    # the batch carries on past the broken file, reports it, and exits non-zero
    assert main(["check", str(cif), str(broken), "--no-geometry", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["valid"] is True
    assert "broken.cif" in rows[1]["error"]


def test_decompose_writes_the_record_and_library_and_reports_a_broken_file(tmp_path, capsys):
    cif = tmp_path / "irmof1.cif"
    assert main(["assemble", "pcu+N16+E14", "--out", str(cif)]) == 0
    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif")
    capsys.readouterr()
    library = tmp_path / "units.json.gz"
    code = main(["decompose", str(cif), str(broken), "--out", str(tmp_path / "records"), "--library", str(library),
                 "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1 and "broken.cif" in rows[1]["error"]
    assert rows[0]["topology"] == "pcu" and rows[0]["reassembly"]["structure_match"]
    assert {u["id"] for u in rows[0]["units"]} == {"N16", "E14"} and rows[0]["new_units"] == []
    record = json.loads((tmp_path / "records" / "irmof1.json").read_text())
    assert len(record["cg"]["beads"]) == 4 and library.exists()


@pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")
def test_evaluate_json_has_the_documented_keys(irmof1, tmp_path, capsys):
    cif = tmp_path / "irmof1.cif"
    irmof1.to_cif(cif)
    assert main(["evaluate", str(cif), "--charges", "none", "--properties", "geometry,henry", "--cycles", "20",
                 "--workers", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)  # one structure: one record, not a list
    assert set(record["henry"]["co2"]) >= {"kh_mol_kg_pa", "ci95", "qst_kj_mol", "cycles"}
    assert record["henry"]["n2"]["kh_mol_kg_pa"] > 0
    assert set(record["geometry"]) >= {"lcd_A", "pld_A", "asa_m2_g", "void_fraction", "density_g_cm3"}
    assert record["settings"]["charges"] == "none" and record["failures"] == {}
    assert main(["evaluate", str(cif), "--properties", "henry,flue"]) == 2  # a typo is named, nothing runs
    assert "'flue'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:OpenCL library not found:RuntimeWarning")
def test_dataset_label_is_resumable(irmof1, tmp_path, capsys):
    (tmp_path / "structures").mkdir()
    irmof1.to_cif(tmp_path / "structures" / "pcu+N16+E14.cif")
    (tmp_path / "structures" / "broken.cif").write_text("not a cif")
    args = ["dataset", "label", str(tmp_path), "--properties", "geometry", "--charges", "none", "--workers", "1",
            "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["structures"] == 2 and first["labelled"] == 1 and first["failed"] == 1
    labels = tmp_path / "labels" / "none.jsonl"
    assert len(labels.read_text().splitlines()) == 2
    assert main(args) == 0  # a rerun finds everything done and appends nothing
    assert len(labels.read_text().splitlines()) == 2
    assert main(["dataset", "label", str(tmp_path / "nowhere"), "--charges", "none"]) == 2
    capsys.readouterr()
    ids = tmp_path / "ids.txt"
    ids.write_text("# the paired set\npcu+N16+E14\n")
    assert main([*args, "--ids", str(ids)]) == 0  # only the listed structure
    assert json.loads(capsys.readouterr().out)["structures"] == 1
    ids.write_text("pcu+N16+E14\nnbo+N1+E1\n")
    assert main([*args, "--ids", str(ids)]) == 2
    assert "1 id(s) not in the dataset, e.g. ['nbo+N1+E1']" in capsys.readouterr().err
    table = tmp_path / "pool.jsonl.gz"  # a pool table's MOFs, labelled again: the ones the dataset lacks are skipped
    with gzip.open(table, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in ({"format": 1}, {"id": "nbo+N1+E1"}, {"id": "pcu+N16+E14"})))
    assert main([*args, "--ids", str(table)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["structures"] == 1 and "1 of the table's 2 MOFs are not in the dataset" in out.err


def test_oracle_flags_are_the_settings_with_their_defaults(capsys):
    from dataclasses import fields

    from agents.cli.main import build_parser
    from agents.cli.oracle import oracle_settings
    from discovery.config import OracleConfig
    from discovery.oracle.settings import OracleSettings

    parser = build_parser()
    for argv, expected in [(["evaluate", "x.cif"], OracleSettings()),
                           (["dataset", "label", "d", "--charges", "none"],
                            OracleSettings(charges="none", engine="grid")),
                           (["dataset", "label", "d"], OracleSettings(charges="eqeq", engine="grid")),
                           (["dataset", "trajectories", "d", "--out", "o", "--charges", "eqeq"],
                            OracleSettings(charges="eqeq"))]:
        args = parser.parse_args(argv)
        assert oracle_settings(args) == expected, argv
        assert args.timeout == OracleConfig().timeout_s  # one timeout default
    args = parser.parse_args(["evaluate", "x.cif", "--gcmc-max-cycles", "300", "--md-guests", "3", "--no-block-pockets",
                              "--temperature", "310", "--trajectories", "traj", "--seed", "4"])
    assert {f.name for f in fields(OracleSettings)} <= set(vars(args))  # every setting has its flag
    assert oracle_settings(args) == OracleSettings(gcmc_max_cycles=300, md_guests=3, block_pockets=False,
                                                    temperature=310.0, trajectories="traj", seed=4)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "x.cif", "--md-guests", "0"])
    assert "argument --md-guests: 0 is below the minimum 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a dataset's CIFs carry no charges: the charge model is asked for
        parser.parse_args(["dataset", "trajectories", "d", "--out", "o"])
    assert "--charges" in capsys.readouterr().err


def test_errors_are_one_line_and_a_bug_leaves_its_trace_in_a_file(irmof1, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from agents.cli import main as cli

    irmof1.to_cif(tmp_path / "irmof1.cif")
    out = tmp_path / "no" / "dir" / "r.jsonl"  # its folder does not exist
    assert main(["evaluate", str(tmp_path / "irmof1.cif"), "--properties", "geometry", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "r.jsonl" in err

    def broken(args):
        raise ValueError("a bug")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: _with_fn(parser, broken))
    assert main(["bb", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unexpected ValueError: a bug" in err
    trace = Path(err.rsplit("full trace: ", 1)[1].rstrip(")"))
    assert "Traceback" in trace.read_text() and "a bug" in trace.read_text()
    trace.unlink()


def _with_fn(parser, fn):
    """The parser, with every command's function replaced by ``fn``."""
    original = parser.parse_args

    def parse_args(argv=None):
        args = original(argv)
        args.fn = fn
        return args

    parser.parse_args = parse_args
    return parser


@pytest.mark.parametrize("args, flag", [
    (["geometry", "x.cif", "--probe-radius", "-1"], "--probe-radius"),
    (["geometry", "x.cif", "--probe-radius", "nan"], "--probe-radius"),
    (["evaluate", "x.cif", "--cycles", "0"], "--cycles"),
    (["evaluate", "x.cif", "--cycles", "-5"], "--cycles"),
    (["assemble", "pcu+N16+E14", "--rmsd-threshold", "nan"], "--rmsd-threshold"),
])
def test_numbers_no_command_can_use_are_refused(args, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}:" in err and "Traceback" not in err


def test_bad_recipes_models_and_logs_are_one_line_errors(tmp_path, capsys):
    import json

    assert main(["assemble", "pcu+N16+-", "--out", str(tmp_path / "x.cif")]) == 2
    assert "pcu+N16+-" in capsys.readouterr().err
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    assert main(["generate", "--n", "1", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "g")]) == 2
    assert "incomplete or damaged generator model" in capsys.readouterr().err
    from discovery.campaign.state import CampaignState
    from discovery.config import load_config

    config = load_config({"proposer": {"kind": "table"}, "oracle": {"kind": "lookup"}})
    CampaignState.create(tmp_path / "run", config).close()
    with open(tmp_path / "run" / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"type": "result", "status": "ok"}) + "\n")  # no id
    assert main(["report", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "event 1 (result) is malformed" in err
