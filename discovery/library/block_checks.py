"""MOFChecker's verdict per building block: which blocks make frameworks MOFChecker rejects whatever they
are built with, so that de novo sampling can leave them out.

Measured on a first version's de novo samples: of 118 valid by the project's checks, 40 failed a MOFChecker
check; in another run (114 valid), the failures sat on a few blocks. A node block whose metal MOFChecker
calls geometrically exposed, or which carries a terminal oxo or an under-coordinated carbon, failed in
every framework it was built into (N300: 9 of 9, N137: 6 of 6, N656: 4 of 4). The table here builds every design-space block into a few random
recipes on nets where it fits (pormake, RMSD <= 0.2) and counts each MOFChecker check it fails there.
``has_hydrogen`` is left out of the verdict: it fails when no block of a recipe has hydrogen, a property
of the combination, not of one block. Zeo++ is not run, so ``is_porous`` is not judged here either.

``discovery library block-checks`` rebuilds ``data/block_mofchecker.json`` (resumable; about 6 CPU-min).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from discovery.errors import DiscoveryError
from discovery.library._pormake import pormake_version

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "block_mofchecker.json"
RECIPE_CHECKS = ("has_hydrogen", "is_porous")  # properties of a whole recipe or of Zeo++, not of one block
BUILD_RMSD = 0.2


def build_block_checks(path: Path = TABLE_PATH, builds: int = 3, seed: int = 0, workers: int | None = None,
                       progress: bool = True) -> Path:
    """Build each design-space block into ``builds`` random recipes and record MOFChecker's failures."""
    from discovery.library.designspace import Sampler
    from discovery.parallel import TaskFailure, map_with_timeout

    table = load_block_checks(path) if path.exists() else {}
    sampler = Sampler()
    space = sampler.space
    todo = [bb.id for bb in sampler.bbs if bb.id not in table
            and (space.keeps_metal_node(bb) or space.keeps_organic_node(bb) or space.keeps_edge(bb))]
    tasks = [{"block": b, "builds": builds, "seed": seed + k} for k, b in enumerate(todo)]
    results = map_with_timeout(_check_block, tasks, timeout=900.0, workers=workers, desc="block checks",
                               progress=progress)
    for k, (task, result) in enumerate(results, start=1):
        table[task["block"]] = {"builds": 0, "failed": {}, "error": result.message} \
            if isinstance(result, TaskFailure) else result
        if k % 10 == 0:
            _save(path, table)
    _save(path, table)
    return path


def load_block_checks(path: Path = TABLE_PATH) -> dict[str, dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    if data.get("pormake_version") != pormake_version():
        raise DiscoveryError(f"{path} was made with pormake {data.get('pormake_version')}, pormake "
                             f"{pormake_version()} is installed; run `discovery library block-checks`")
    return data["blocks"]


def rejected_blocks(table: dict[str, dict[str, Any]], share: float = 0.5) -> set[str]:
    """Blocks for which some check (other than ``RECIPE_CHECKS``) failed in more than ``share`` of the
    builds that succeeded."""
    return {b for b, row in table.items() if row["builds"] and any(
        n / row["builds"] > share for c, n in row["failed"].items() if c not in RECIPE_CHECKS)}


def _check_block(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: ``builds`` random recipes holding the block, built and checked (failed builds are skipped)."""
    from discovery.library.assembly import Assembler, Recipe
    from discovery.library.designspace import Sampler
    from discovery.structures.mofchecker import mofchecker_failures, mofchecker_report

    sampler, block = Sampler(), task["block"]
    rng = np.random.default_rng(task["seed"])
    assembler = Assembler(rmsd_threshold=BUILD_RMSD)
    failed: dict[str, int] = {}
    done = tries = 0
    while done < task["builds"] and tries < 6 * task["builds"]:
        tries += 1
        recipe = _recipe_with(block, sampler, rng)
        if recipe is None:
            break
        try:
            mof = assembler.assemble(Recipe.parse(recipe))
        except DiscoveryError:
            continue
        done += 1
        for check in mofchecker_failures(mofchecker_report(mof.structure, name=mof.id)):
            failed[check] = failed.get(check, 0) + 1
    return {"builds": done, "failed": failed}


def _recipe_with(block: str, sampler, rng: np.random.Generator) -> str | None:
    """A random recipe holding ``block``: an edge replaces a design-space recipe's edges; a node takes a
    random slot it fits (RMSD <= BUILD_RMSD) of a usable net, the other slots random fitting blocks (one
    of them a metal block when this one has none)."""
    bb = sampler.bbs.get(block)
    if bb.kind == "edge":
        recipe = sampler._draw(rng)  # the enumeration's own draw (None: over its size limits; draw again)
        while recipe is None:
            recipe = sampler._draw(rng)
        return f"{recipe.topology}+{'.'.join(recipe.node_bbs)}+{'.'.join([block] * len(recipe.edge_bbs))}"
    slots = [(net, t) for net, _ in sampler.nets for t in range(len(net.node_types))
             if sampler.table.get(f"{net.name}:{t}", {}).get(block, 1.0) <= BUILD_RMSD
             and (bb.has_metal or len(net.node_types) > 1)]  # an organic node needs a metal partner
    if not slots:
        return None
    net, mine = slots[rng.integers(len(slots))]
    nodes = []
    for t in range(len(net.node_types)):
        if t == mine:
            nodes.append(block)
            continue
        fits = [b for b, r in sampler.table.get(f"{net.name}:{t}", {}).items() if r <= BUILD_RMSD
                and (sampler.space.keeps_metal_node(sampler.bbs.get(b)) or sampler.space.keeps_organic_node(
                    sampler.bbs.get(b)))]
        if not bb.has_metal:
            fits = [b for b in fits if sampler.bbs.get(b).has_metal] or fits
        if not fits:
            return None
        nodes.append(fits[rng.integers(len(fits))])
    edge = sampler.edges[rng.integers(len(sampler.edges))]
    return f"{net.name}+{'.'.join(nodes)}+{'.'.join([edge] * len(net.edge_types))}"


def _save(path: Path, table: dict[str, dict[str, Any]]) -> None:
    payload = {"pormake_version": pormake_version(), "build_rmsd": BUILD_RMSD, "blocks": table}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":"), sort_keys=True))
    tmp.replace(path)
