"""The baseline generators behind the ``Generator`` contract: rows of a pool table, draws and mutations of
the enumerated design space, and the MOFs of a dataset directory (screening a database of real MOFs). The
diffusion generator is ``discovery.generator.campaign.CampaignGenerator``.

``TableGenerator`` is the smallest implementation of the contract, the one to copy (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from discovery.errors import DatasetError
from discovery.library.candidates import compact_cg, prepare_proposals, table_candidate
from discovery.structures.mof import MOF
from discovery.library.proposer import DesignSpaceProposer, TableProposer
from discovery.campaign.contracts import Generator, ProposalContext


class TableGenerator(Generator):
    """Unseen rows of a pool table, half of them one building block or net away from the best so far."""

    name = "table"

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], mutation_fraction: float = 0.5) -> None:
        self.rows = rows
        real = {i: ((r["cg"].get("topology") or ""), frozenset(b["bb_id"] for b in r["cg"]["beads"]))
                for i, r in rows.items() if "+" not in i}  # real MOFs: ids without a recipe
        self.proposer = TableProposer(list(rows), mutation_fraction, units=real)

    def propose(self, n: int, context: ProposalContext) -> list[dict[str, Any]]:
        rng = np.random.default_rng([context.seed, context.round])
        proposals = self.proposer.propose(n, rng, exclude=context.exclude, parents=list(context.parents))
        return [{**table_candidate(dict(self.rows[p.recipe]), p.origin), "parent": p.parent, "mutation": p.mutation,
                 "generator": f"{self.name}-v1"} for p in proposals]


class DesignSpaceGenerator(Generator):
    """Fresh draws from the curated design space and one-step mutations of the best MOFs so far, assembled,
    checked and described in this process."""

    name = "designspace"

    def __init__(self, mutation_fraction: float = 0.5) -> None:
        self.proposer = DesignSpaceProposer(mutation_fraction=mutation_fraction)

    def propose(self, n: int, context: ProposalContext) -> list[dict[str, Any]]:
        rng = np.random.default_rng([context.seed, context.round])
        proposals = self.proposer.propose(n, rng, exclude=context.exclude, parents=list(context.parents))
        return [{**r, "generator": f"{self.name}-v1"} for r in prepare_proposals(proposals)]


class DatasetGenerator(Generator):
    """Unseen MOFs of a dataset directory (``discovery dataset import`` or ``build``): screening a database,
    real MOFs included. ``mutation_fraction`` of each round share the net and a building unit with one of
    the best MOFs so far, the rest are drawn at random; the planner chooses which the oracle simulates.
    Only MOFs with a CG view (those that could be cut into units) can be scored, so only they are proposed."""

    name = "dataset"

    def __init__(self, folder: str | Path, mutation_fraction: float = 0.5) -> None:
        self.folder = Path(folder)
        self.rows = screenable(self.folder)
        if not self.rows:
            raise DatasetError(f"{self.folder}: no MOF with a CG view to screen (`discovery dataset summary` "
                               "shows what the directory holds)")
        self.mutation_fraction = mutation_fraction
        self._probe: dict[str, dict[str, float]] = {}

    def propose(self, n: int, context: ProposalContext) -> list[dict[str, Any]]:
        rng = np.random.default_rng([context.seed, context.round])
        used = set(context.exclude) | set(context.parents)
        picks: list[tuple[str, str, str | None]] = []  # (id, origin, parent)
        for parent in context.parents:
            if len(picks) >= round(self.mutation_fraction * n) or parent not in self.rows:
                continue
            near = [i for i in self.rows if i not in used and _neighbours(self.rows[i], self.rows[parent])]
            if near:
                picks.append((near[int(rng.integers(len(near)))], "mutation", parent))
                used.add(picks[-1][0])
        fresh = [i for i in self.rows if i not in used]
        picks += [(fresh[int(k)], "dataset", None) for k in rng.permutation(len(fresh))[: n - len(picks)]]
        return [self._candidate(i, origin, parent) for i, origin, parent in picks]

    def _candidate(self, mof_id: str, origin: str, parent: str | None) -> dict[str, Any]:
        from discovery.structures.descriptors import probe_descriptors

        mof = MOF.from_json(self.folder / "structures" / f"{mof_id}.json")
        if mof_id not in self._probe:  # the probe's energies, once per MOF (a fraction of a second)
            self._probe[mof_id] = probe_descriptors(mof.structure).to_dict()
        return {"id": mof_id, "recipe": mof_id, "origin": origin, "parent": parent,
                "mutation": "shared-unit" if parent else None, "status": "valid", "cg": compact_cg(mof.cg),
                **({"units": mof.units} if mof.units else {}),
                "descriptors": {**self.rows[mof_id]["geometry"], **self._probe[mof_id]},
                "mof_json": mof.to_json(), "formula": mof.formula, "n_atoms": mof.n_atoms,
                "generator": f"{self.name}-v1"}


def screenable(folder: Path) -> dict[str, dict[str, Any]]:
    """The dataset's kept MOFs that have a CG view, with their Zeo++ geometry and units, by id."""
    from discovery.jsonl import read_rows

    if not (folder / "results.jsonl").exists():
        raise DatasetError(f"{folder}: not a dataset directory (no results.jsonl; build one with `discovery "
                           "dataset import` or `discovery dataset build`)")
    out = {}
    for mof_id, row in read_rows(folder / "results.jsonl", "id").items():
        cut = row.get("decomposition")  # a design-space build has none: its MOFs carry their CG view
        if row.get("status") == "valid" and row.get("geometry") and (cut is None or cut.get("status") == "ok"):
            out[mof_id] = {"geometry": row["geometry"], "units": set((cut or {}).get("units") or _recipe_units(mof_id)),
                           "topology": (cut or {}).get("topology") or mof_id.split("+")[0]}
    return out


def _recipe_units(recipe: str) -> list[str]:
    return [u for part in recipe.split("+")[1:] for u in part.split(".") if u and u != "-"]


def _neighbours(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a["topology"] == b["topology"] and bool(a["units"] & b["units"])
