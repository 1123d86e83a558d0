"""The parts a campaign config names, as builders: zero-argument callables that an executor calls where the
part will live (this process, or a Ray actor), so that heavy models are built once, on their worker.

A part given by the user replaces the config's: an object (used as it is; an executor that runs it
elsewhere sends a copy) or a builder. Defaults by config key:
- ``proposer.kind``: diffusion (``discovery.generator.campaign``), designspace, table (``generators``);
- ``surrogate.kind``: ensemble or gp (``surrogates.adsorption.campaign_model.from_config``, found by name so that the
  core does not import the learned models' package);
- ``oracle.kind``: raspa (``SimulationOracle``) or lookup (``LookupOracle``).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from discovery.config import CampaignConfig
from discovery.errors import DiscoveryError
from discovery.models import resolve_model
from discovery.campaign.contracts import Generator, Oracle, Surrogate
from discovery.campaign.modelfiles import ModelFiles

SURROGATE_FACTORY = "surrogates.adsorption.campaign_model:from_config"  # (config, model_dir) -> Surrogate


@dataclass(frozen=True)
class Parts:
    generator: Callable[[], Generator]
    surrogate: Callable[[], Surrogate]
    oracle: Callable[[], Oracle]

    @classmethod
    def from_config(cls, config: CampaignConfig, run_dir: str | Path, generator: Any = None, surrogate: Any = None,
                    oracle: Any = None) -> "Parts":
        """The config's parts, each replaced by the one given; paths made absolute (a worker need not start
        in this directory). Checks that need no worker run here, before anything starts."""
        config = _absolute_paths(config, Path(run_dir))
        if surrogate is None:
            check_transport_model(config)
        if generator is None and config.proposer.kind == "dataset" and \
                not (Path(config.proposer.dataset) / "results.jsonl").exists():
            raise DiscoveryError(f"proposer.dataset: {config.proposer.dataset} is not a dataset directory (make one "
                                 "with `discovery dataset import core-mof --out DIR` or `discovery dataset import CIF_DIR "
                                 "--out DIR`)")
        generator_files = transport_files = None
        if generator is None and config.proposer.kind == "diffusion":
            from discovery.generator.campaign import ensure_generator

            ensure_generator(config.proposer, config.seed)
            generator_files = ModelFiles.read(config.proposer.model)
        if surrogate is None and config.uses_transport:
            transport_files = ModelFiles.read(config.surrogate.transport_model)
        # the models travel with the builders (bytes), not by path: a worker on another machine of a
        # cluster cannot read the driver's models/ folder
        return cls(generator=_builder(generator, Generator, build_generator, config, str(run_dir), generator_files),
                   surrogate=_builder(surrogate, Surrogate, build_surrogate, config, str(Path(run_dir) / "models"),
                                      transport_files),
                   oracle=_builder(oracle, Oracle, build_oracle, config))


def _builder(given: Any, contract: type, default: Callable, *args: Any) -> Callable[[], Any]:
    if given is None:
        return functools.partial(default, *args)
    if isinstance(given, type) or (callable(given) and not isinstance(given, contract)
                                   and not hasattr(given, _METHOD[contract])):
        return given  # a class or a factory: called on the worker
    return functools.partial(_same, given)  # an object: every call returns it (a copy on another worker)


_METHOD = {Generator: "propose", Surrogate: "fit", Oracle: "evaluate"}


def _same(obj: Any) -> Any:
    return obj


def build_generator(config: CampaignConfig, run_dir: str | None = None, model: ModelFiles | None = None) -> Generator:
    """The config's generator; ``model``: the diffusion generator's files, loaded from this machine's copy."""
    p = config.proposer
    if p.kind == "diffusion":
        from discovery.generator.campaign import CampaignGenerator

        if model is not None:
            p = replace(p, model=str(model.materialize()))
        return CampaignGenerator(p, run_dir, seed=config.seed)
    from discovery.campaign.generators import DatasetGenerator, DesignSpaceGenerator, TableGenerator

    if p.kind == "table":
        return TableGenerator(load_table(config), p.mutation_fraction)
    if p.kind == "dataset":
        return DatasetGenerator(p.dataset, p.mutation_fraction)
    return DesignSpaceGenerator(p.mutation_fraction)


def build_surrogate(config: CampaignConfig, model_dir: str, transport: ModelFiles | None = None) -> Surrogate:
    """The config's surrogate, saving its versions in ``model_dir``; ``transport``: the transport model's files."""
    if transport is not None:
        config = replace(config, surrogate=replace(config.surrogate, transport_model=str(transport.materialize())))
    module, _, name = SURROGATE_FACTORY.partition(":")
    return getattr(importlib.import_module(module), name)(config, model_dir)


def build_oracle(config: CampaignConfig) -> Oracle:
    from discovery.campaign.oracles import LookupOracle, SimulationOracle

    if config.oracle.kind == "lookup":
        return LookupOracle(load_table(config), delay_s=config.oracle.lookup_delay_s)
    return SimulationOracle(config.oracle, seed=config.seed)


def load_table(config: CampaignConfig) -> dict[str, dict[str, Any]] | None:
    """The pool table of a ``proposer.kind: table`` campaign, by id (rows with a CG view), else None."""
    if config.proposer.kind != "table":
        return None
    from discovery.pool import read_table, resolve_table

    _, rows = read_table(resolve_table(config.proposer.table))
    return {r["id"]: r for r in rows if r.get("cg")}


def top_threshold(config: CampaignConfig, targets: tuple[str, ...]) -> float | None:
    """The first objective's value at the top ``top_fraction`` of its labelled reference
    (``reference_values``); None where no reference applies or the surrogate does not predict it."""
    if config.planner.objectives[0] not in targets:
        return None
    values = reference_values(config)
    return None if values is None else top_value(values, config.top_fraction)


def reference_values(config: CampaignConfig) -> np.ndarray | None:
    """The first objective's labelled values over a reference the campaign can be judged against: the
    campaign's own table, or the committed design space labelled with the campaign oracle's charges
    (``top_found`` counts MOFs as good as its top 1 %; the discovery curve draws what random search would find
    in it). None where no reference applies."""
    from discovery.pool import design_table, read_table

    name = config.planner.objectives[0]
    table = load_table(config)
    rows: Iterable[Mapping[str, Any]]
    if table is not None:
        rows = table.values()
    else:
        design = design_table(config.oracle.charges)
        if design is None:
            return None
        header, rows = read_table(design)
        if header.get("charges") != config.oracle.charges:
            return None
    values = [r["labels"][name] for r in rows if name in r.get("labels", {})]
    return np.asarray(values, dtype=float) if values else None


def top_value(values: np.ndarray, fraction: float) -> float:
    """The value at the top ``fraction`` of ``values`` (at least the best one)."""
    ordered = np.sort(values)[::-1]
    return float(ordered[max(1, int(round(fraction * len(ordered)))) - 1])


def check_transport_model(config: CampaignConfig) -> None:
    """Fail before any worker starts when transport is an objective and its model is missing."""
    if config.uses_transport and not (Path(config.surrogate.transport_model) / "model.json").exists():
        raise DiscoveryError(
            f"no transport model at {config.surrogate.transport_model} (surrogate.transport_model), and "
            "log10_d_co2 is an objective: name the shipped model (`default`) or train one with "
            "`discovery train transport --out MODEL` (docs/transport.md)")


def _absolute_paths(config: CampaignConfig, run_dir: Path) -> CampaignConfig:
    """Models and the MD trajectory folder as absolute paths (the trajectories in the run directory unless
    the config names a folder: they can extend the transport model's training data)."""
    model, transport = (str(resolve_model(p, kind).resolve()) for p, kind in
                        ((config.proposer.model, "generator"), (config.surrogate.transport_model, "transport")))
    dataset = config.proposer.dataset and str(Path(config.proposer.dataset).resolve())
    config = replace(config, proposer=replace(config.proposer, model=model, dataset=dataset),
                     surrogate=replace(config.surrogate, transport_model=transport))
    if "diffusivity" in config.oracle.properties:
        folder = Path(getattr(config.oracle, "trajectories", None) or run_dir / "trajectories").resolve()
        config = replace(config, oracle=replace(config.oracle, trajectories=str(folder)))
    return config
