"""Campaign configuration: typed sections, validated when loaded.

A config is YAML (or a dict) mapped onto the dataclasses below. An unknown key, a value of the wrong type
or outside its allowed range fails at load with the dotted key named (``oracle.charges: 'ddec' is not one
of cif, eqeq, none``), never deep inside a running campaign. ``--set key=value`` overrides are parsed as
YAML scalars and applied before validation, so they are checked the same way.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from discovery.errors import DiscoveryError
from discovery.fields import bounded, choice, problem
from discovery.oracle.settings import TIMEOUT_S, SimulationSettings
from discovery.targets import ADSORPTION, D_CO2, KH_CO2

ADSORPTION_TARGETS = ADSORPTION  # the adsorption ensemble's outputs
TRANSPORT_TARGET = D_CO2  # the CG dynamics model's


class ConfigError(DiscoveryError):
    """A campaign config that cannot be used; the message names the key."""


@dataclass(frozen=True)
class ProposerConfig:
    # diffusion: the CG diffusion generator (fine-tuned on the best results as they come);
    # designspace: draws and mutations of enumerated recipes (the baseline); table: rows of a pool table;
    # dataset: the MOFs of a dataset directory, e.g. imported real MOFs (screening a database)
    kind: str = choice("diffusion", "designspace", "table", "dataset", default="diffusion")
    candidates_per_round: int = bounded(48, 1)  # new candidates prepared before each selection
    mutation_fraction: float = bounded(0.5, 0.0, 1.0)  # designspace/table: mutations of the best MOFs so far
    parents: int = bounded(16, 1)  # the best results so far (by the campaign's objectives) handed to the generator
    table: str | None = None  # kind "table": a pool table's path or committed name (design, core; None: design)
    dataset: str | None = None  # kind "dataset": a directory of `discovery dataset import` (or `build`)
    # kind "diffusion": a trained generator's directory (`discovery train generator`); "default": the one
    # the package ships (discovery/data/models/README.md)
    model: str = "default"
    # ... with this many steps (about 20 min on two threads; docs/generator.md has what 4,000 gave)
    train_steps: int = bounded(12000, 1)
    train_if_missing: bool = False  # train the generator first when proposer.model is missing (explicit: it is long)
    # kind "diffusion": "edit" re-noises the best MOFs so far (at first the training set's best) and
    # denoises them: bead positions from ``strength`` of the diffusion run, building blocks from
    # ``block_strength`` (docs/generator.md has the measurements behind 0.3 and 0.6); "denovo" samples from
    # the prior
    mode: str = choice("edit", "denovo", default="edit")
    strength: float = bounded(0.3, 0.01, 1.0)
    block_strength: float = bounded(0.6, 0.01, 1.0)
    steer: int = bounded(4, 1)  # de novo samples: best of this many latents per sample (1: no steering)
    # mode "edit": this share of each round's candidates is sampled de novo (mode "denovo": all of them): a net
    # chosen by the latent, its blocks denoised from noise (docs/generator.md, "De novo")
    denovo_fraction: float = bounded(0.25, 0.0, 1.0)
    denovo_rmsd: float = bounded(0.2, 0.01, 0.3)  # de novo: pormake's node-slot RMSD a node block may have
    denovo_unseen: float = bounded(0.1, 0.0, 0.9)  # de novo: share of the net prior on nets the training lacks
    # once fine-tuned, sampling amplifies by this factor what fine-tuning changed in the building blocks
    # (1: the fine-tuned model alone; docs/generator.md has the retrain lift at 1, 2 and 3)
    guidance: float = bounded(2.0, 1.0)
    finetune_after: int = bounded(8, 1)  # kind "diffusion": fine-tune once this many new results are in


@dataclass(frozen=True)
class OracleConfig(SimulationSettings):
    """Every oracle setting (``SimulationSettings``: charges, target, cycles, MD, ..., same names and defaults;
    the seed is the campaign's) and the campaign's own. ``trajectories``: null keeps the MD trajectories in
    RUN_DIR/trajectories (training data for `discovery train transport`)."""

    kind: str = choice("raspa", "lookup", default="raspa")  # lookup: labels from the proposer's table
    properties: tuple[str, ...] = ("geometry", "henry")
    # the multi-fidelity funnel: levels every selected MOF runs first (e.g. [geometry, henry], seconds); the
    # planner then promotes screened MOFs to the rest of ``properties`` (GCMC, MD: minutes) by their
    # acquisition per CPU-second (docs/campaign.md, "The funnel"). Empty: every pick runs every level
    screen: tuple[str, ...] = ()
    timeout_s: float = bounded(TIMEOUT_S, 1.0)  # seconds per oracle call before it is recorded failed
    max_retries: int = bounded(2, 0)  # a crashed worker's task is retried this often, then recorded failed
    lookup_delay_s: float = bounded(0.0, 0.0)  # kind lookup: seconds per call (simulation time in loop benchmarks)


@dataclass(frozen=True)
class SurrogateConfig:
    kind: str = choice("ensemble", "gp", default="ensemble")
    members: int = bounded(4, 2)
    epochs: int = bounded(15, 1)
    retrain_every: int = bounded(8, 1)  # new results between retrainings
    min_train: int = bounded(10, 10)  # results before the first model; until then selection is random
    # objective log10_d_co2: the CG dynamics model and its rollout per candidate; "default" is the shipped
    # model (discovery/data/models/transport), a path one trained with `discovery train transport`
    transport_model: str = "default"
    transport_ps: float = bounded(1000.0, 50.0)


@dataclass(frozen=True)
class PlannerSection:
    strategy: str = choice("botorch", "greedy", "random", default="botorch")
    objectives: tuple[str, ...] = (KH_CO2,)
    minimum: dict[str, float] = field(default_factory=dict)  # outcome constraints, e.g. log10_selectivity: 1.0
    prefilter: int = bounded(300, 1)
    joint_above: int = bounded(16, 0)  # larger single-objective batches: picks from one joint posterior sample
    # the funnel's CPU-s per oracle level, replacing the measured defaults (discovery/oracle/costs.py)
    costs: dict[str, float] = field(default_factory=dict)
    # the funnel, `run()`: rounds beyond the usual 2 before a promotion's result is planned on, so that
    # screening goes on while its MD runs (a round waits for every result it is conditioned on)
    promotion_lag: int = bounded(4, 0)


@dataclass(frozen=True)
class ResourcesConfig:
    address: str | None = None  # Ray: None starts a local instance; "auto" or "ray://host:10001" joins one
    oracle_workers: int | None = bounded(None, 1)  # None: one per CPU of the Ray cluster
    cpus_per_oracle: float = bounded(1.0, 0.01)  # above zero: 0 would ask Ray for an oracle actor per ~1e-9 CPU
    # oracle calls one oracle actor serves at once (threads): above 1 only for an oracle that waits rather than
    # computes (a lookup, a remote simulation service); each actor still reserves cpus_per_oracle, and a call
    # past oracle.timeout_s restarts its actor, so the other calls it serves are retried
    oracle_concurrency: int = bounded(1, 1)
    namespace: str = "mof-discovery"


@dataclass(frozen=True)
class TrackingConfig:
    mlflow: bool = True
    root: str = "mlruns"  # SQLite store and artifacts, no server needed
    # a team's MLflow tracking server (http://HOST:PORT or https://...) or any MLflow store URI instead of the
    # local store under `root`; MLflow reads credentials from its own environment variables, never the config
    uri: str | None = None
    experiment: str = "mof-discovery"
    top_k: int = bounded(10, 0)  # best candidates whose CIFs are logged

    def __post_init__(self) -> None:
        if self.uri is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", self.uri):
            raise ConfigError(f"tracking.uri: {self.uri!r} is not a URI (e.g. http://mlflow.example.org:5000 "
                              "or sqlite:///path/mlflow.db)")
        if self.uri is not None and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", self.uri):
            raise ConfigError("tracking.uri: holds a password; give it through MLFLOW_TRACKING_USERNAME and "
                              "MLFLOW_TRACKING_PASSWORD instead, so that it is not written into the run directory")


@dataclass(frozen=True)
class CampaignConfig:
    name: str = "campaign"  # the run directory is runs/NAME-TIME: letters, digits, '.', '_', '-' only
    seed: int = bounded(0, 0)
    # oracle evaluations in all; with a funnel (oracle.screen), the CPU of that many evaluations at every level,
    # spent on screens and promotions (CampaignConfig.stage_units)
    budget: int = bounded(64, 1)
    batch_size: int = bounded(8, 1)  # q: candidates selected at a time
    top_fraction: float = bounded(0.01, 0.0, 1.0)  # "top-k found" counts against the table's top fraction
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    planner: PlannerSection = field(default_factory=PlannerSection)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name) or ".." in self.name:
            raise ConfigError(f"name: {self.name!r} must be letters, digits, '.', '_' or '-' (it names the run "
                              "directory under runs/)")
        if self.proposer.kind == "dataset" and not self.proposer.dataset:
            raise ConfigError("proposer.dataset: kind 'dataset' screens a dataset directory; name one (e.g. the "
                              "output of `discovery dataset import core-mof --out DIR`)")
        if self.oracle.kind == "lookup" and self.proposer.kind != "table":
            raise ConfigError("oracle.kind: 'lookup' needs proposer.kind: 'table' (labels come from the table)")
        from discovery.oracle.core import LEVELS

        bad = [p for p in self.oracle.properties if p not in LEVELS]
        if bad:
            raise ConfigError(f"oracle.properties: unknown level(s) {bad}; available: {', '.join(LEVELS)}")
        try:
            self.planner_config()
        except DiscoveryError as exc:
            raise ConfigError(f"planner: {exc}") from exc
        self._check_funnel(LEVELS)
        if self.uses_transport:
            if "diffusivity" not in self.oracle.properties:
                raise ConfigError("planner: log10_d_co2 is an objective, so oracle.properties must include "
                                  "'diffusivity' (the MD oracle that validates the transport predictions)")
            if self.surrogate.kind != "ensemble" or self.oracle.kind == "lookup":
                raise ConfigError("planner: log10_d_co2 needs surrogate.kind 'ensemble' and the simulation oracle")

    def _check_funnel(self, levels: tuple[str, ...]) -> None:
        o, p = self.oracle, self.planner
        bad = [k for k, v in p.costs.items() if k not in levels or not v > 0]
        if bad:
            raise ConfigError(f"planner.costs: {bad[0]!r} must be an oracle level ({', '.join(levels)}) with a "
                              "positive CPU-s value")
        if not o.screen:
            return
        outside = [s for s in o.screen if s not in o.properties]
        if outside:
            raise ConfigError(f"oracle.screen: {outside} not in oracle.properties {list(o.properties)}")
        if not self.promote_levels:
            raise ConfigError("oracle.screen: holds every level of oracle.properties, so nothing is left to "
                              "promote to; leave it empty to run every level on every pick")
        if self.planner.strategy == "botorch" and self.surrogate.kind != "ensemble":
            raise ConfigError("oracle.screen: the funnel pins screened MOFs' measured values in the ensemble's "
                              "posterior; it needs surrogate.kind 'ensemble'")

    @property
    def funnel(self) -> bool:
        """Picks are screened first (``oracle.screen``), then some are promoted to the other levels."""
        return bool(self.oracle.screen)

    @property
    def promote_levels(self) -> tuple[str, ...]:
        return tuple(p for p in self.oracle.properties if p not in self.oracle.screen)

    def stage_cost(self, stage: str) -> float:
        """CPU-s of one oracle call at ``stage`` (screen, promote or full), from the measured level costs."""
        from discovery.oracle.costs import stage_cost

        levels = {"screen": self.oracle.screen, "promote": self.promote_levels}.get(stage, self.oracle.properties)
        return stage_cost(levels, self.oracle.engine, self.oracle.charges, self.planner.costs)

    def stage_units(self, stage: str) -> float:
        """Budget units of one call at ``stage``: a full evaluation (every level) is one unit, so the funnel
        spends the CPU that ``budget`` full evaluations would, however it splits it."""
        if stage == "full" or not self.funnel:
            return 1.0
        return self.stage_cost(stage) / (self.stage_cost("screen") + self.stage_cost("promote"))

    @property
    def uses_transport(self) -> bool:
        """Transport (D of CO2 from the CG dynamics model) is an objective or a constraint."""
        return TRANSPORT_TARGET in (*self.planner.objectives, *self.planner.minimum)

    @property
    def targets(self) -> tuple[str, ...]:
        """What the campaign's surrogates predict, in order: adsorption, then transport when used."""
        return (*ADSORPTION_TARGETS, *((TRANSPORT_TARGET,) if self.uses_transport else ()))

    def planner_config(self):
        from discovery.campaign.planner import PlannerConfig

        p = self.planner
        return PlannerConfig(strategy=p.strategy, objectives=p.objectives, minimum=tuple(p.minimum.items()),
                             targets=self.targets, prefilter=p.prefilter, joint_above=p.joint_above,
                             seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> CampaignConfig:
    """A validated config from a YAML file or a mapping, with ``key.sub=value`` overrides applied."""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"no config file at {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for item in overrides:
        _override(data, item)
    return build(CampaignConfig, data, "")


def _override(data: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. budget=32 or oracle.charges=none")
    *parents, last = key.strip().split(".")
    node = data
    for name in parents:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {name} is not a section")
    node[last] = yaml.safe_load(text) if text.strip() else None


def build(cls: type, data: Any, where: str) -> Any:
    """``cls`` (a dataclass) from ``data``, every value checked against the field's type and metadata."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a section (mapping), got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"{key}: unknown key; allowed here: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _value(hints[name], data[name], f"{where}.{name}" if where else name, fields[name])
              for name in data}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except DiscoveryError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _value(tp: Any, value: Any, key: str, f: dataclasses.Field) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    value = _typed(tp, value, key)
    why = problem(f, value)
    if why:
        raise ConfigError(f"{key}: {why}")
    return value


def _typed(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _typed(next(a for a in args if a is not type(None)), value, key)
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_typed(args[0], v, key) for v in items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _typed(args[1], v, f"{key}.{k}") for k, v in value.items()}
    return _scalar(tp, value, key)


def _scalar(tp: type, value: Any, key: str) -> Any:
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:
            raise ConfigError(f"{key}: NaN is not allowed")
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")


def _plain(obj: Any) -> Any:
    """Tuples as lists, so the resolved config dumps as plain YAML/JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump_config(config: CampaignConfig, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
