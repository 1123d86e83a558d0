"""The baseline generators behind the ``Generator`` contract: rows of a pool table, and draws and mutations
of the enumerated design space. The diffusion generator is ``discovery.generator.campaign.CampaignGenerator``.

``TableGenerator`` is the smallest implementation of the contract, the one to copy (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from discovery.library.candidates import prepare_proposals, table_candidate
from discovery.library.proposer import DesignSpaceProposer, TableProposer
from discovery.campaign.contracts import Generator, ProposalContext


class TableGenerator(Generator):
    """Unseen rows of a pool table, half of them one building block or net away from the best so far."""

    name = "table"

    def __init__(self, rows: Mapping[str, Mapping[str, Any]], mutation_fraction: float = 0.5) -> None:
        self.rows = rows
        self.proposer = TableProposer(list(rows), mutation_fraction)

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
