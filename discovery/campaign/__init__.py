"""The campaign core in plain Python: ``Campaign`` (the round logic), the contracts its parts implement
(``Oracle``, ``Generator``, ``Surrogate``), and the in-process executor. ``agents`` runs the same core on Ray.

    from discovery.campaign import Campaign
    campaign = Campaign.from_config("configs/quickstart.yaml")  # in this process
    for r in campaign.rounds():
        print(r["round"], r["selected"])
"""

from .contracts import Candidate, Feedback, Generator, Oracle, Outcome, ProposalContext, Surrogate
from .core import LAG, Campaign
from .executor import Call, Executor, InProcessExecutor
from .observers import ArtifactWriter, Observer

__all__ = ["ArtifactWriter", "Call", "Campaign", "Candidate", "Executor", "Feedback", "Generator",
           "InProcessExecutor", "LAG", "Observer", "Oracle", "Outcome", "ProposalContext", "Surrogate"]
