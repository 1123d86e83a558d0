"""The ``discovery`` command line: one package, the top layer (it may import every other). ``main`` builds the
parser; each module registers the commands of one part: structures and the library (``main``), the oracle
(``oracle``), the generator, the surrogates, transport, and campaigns. ``python -m agents.cli`` runs it too."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .main import main as run

    return run(argv)
