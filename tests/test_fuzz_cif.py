"""Malformed CIFs at the command line (geometry, check, evaluate): every command either gives the clean file's
result or exits non-zero with a one-line error or the file's problem in its output; none exits 0 with a
changed geometry. Mutations of an IRMOF-1 CIF (as the project
writes it, formula stated): truncation at seeded lines, sign and NaN flips, duplicated atoms, unknown and
unsupported elements, a broken loop."""

from __future__ import annotations

import random

import pytest

from agents.cli.main import main


def _mutations(text: str) -> dict[str, str]:
    lines = text.splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith(" ") and len(line.split()) == 5]
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(3, len(lines)), 6)) + [atoms[-1]]  # the last cut drops one atom
    out = {f"truncated at line {k}": "\n".join(lines[:k]) + "\n" for k in cuts}
    swap = lambda old, new: text.replace(old, new, 1)  # noqa: E731
    a = next(line for line in lines if line.startswith("_cell_length_a"))
    atom = lines[atoms[5]]
    label, el, x, y, z = atom.split()
    out.update({
        "negative cell length": swap(a, "_cell_length_a   -" + a.split()[1]),
        "zero cell length": swap(a, "_cell_length_a   0.0"),
        "NaN cell length": swap(a, "_cell_length_a   nan"),
        "angles that make no cell": swap("_cell_angle_beta   90.000000", "_cell_angle_beta   179.000000")
        .replace("_cell_angle_alpha   90.000000", "_cell_angle_alpha   1.000000"),
        "NaN coordinate": swap(atom, f" {label} {el} nan {y} {z}"),
        "unknown value coordinate": swap(atom, f" {label} {el} ? {y} {z}"),
        "duplicated atom": swap(atom, atom + "\n" + f" {label}b {el} {x} {y} {z}"),
        "unknown element": swap(atom, f" {label} Xx {x} {y} {z}"),
        "unsupported element": swap(atom, f" {label} Og {x} {y} {z}"),
        "broken loop": swap(" _atom_site_fract_z\n", ""),
    })
    return out


@pytest.fixture(scope="module")
def clean(irmof1, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    irmof1.to_cif(folder / "irmof1.cif")
    return (folder / "irmof1.cif").read_text()


def _reports_a_problem(out: str) -> bool:
    """The command's JSON output names an error, a failed check or a failed level for the file."""
    import json

    rows = json.loads(out)
    rows = rows if isinstance(rows, list) else [rows]
    return all(r.get("error") or r.get("valid") is False or r.get("failures") for r in rows)


def _run(capsys, args):
    import json

    rc = main(args)
    out = capsys.readouterr()
    if args[0] == "evaluate" and rc == 0:  # the result, without timings and provenance that differ run to run
        record = json.loads(out.out)
        return rc, json.dumps({"geometry": record["geometry"], "failures": record["failures"]}), out.err
    return rc, out.out, out.err


@pytest.mark.parametrize("command", [["geometry", "--json"], ["check", "--json"],
                                     ["evaluate", "--properties", "geometry", "--charges", "none", "--json"]])
def test_malformed_cifs_give_the_clean_result_or_a_one_line_error(command, clean, tmp_path, capsys):
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "irmof1.cif").write_text(clean)
    rc, expected, _ = _run(capsys, [command[0], str(tmp_path / "clean" / "irmof1.cif"), *command[1:]])
    assert rc == 0 and expected
    changed_but_ok = []
    for k, (name, text) in enumerate(_mutations(clean).items()):
        folder = tmp_path / f"m{k}"
        folder.mkdir()
        path = folder / "irmof1.cif"
        path.write_text(text)
        rc, out, err = _run(capsys, [command[0], str(path), *command[1:]])
        if rc == 0:
            if out.replace(str(folder), str(tmp_path / "clean")) != expected:
                changed_but_ok.append(name)
        elif err.strip():  # the command failed: one line naming the problem
            assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), (name, err)
        else:  # a batch command reports the file's problem in its output, and exits non-zero
            assert str(path) in out and _reports_a_problem(out), (name, out)
    assert not changed_but_ok, f"exit 0 with a changed result: {changed_but_ok}"
