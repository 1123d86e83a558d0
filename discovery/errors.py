"""One exception root for the package, with a subclass per kind of bad input."""


class DiscoveryError(Exception):
    """Root of every error this package raises on purpose."""


class UnknownBuildingBlockError(DiscoveryError, KeyError):
    """A building-block id that is not in the library."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else "unknown building block"


class UnknownTopologyError(DiscoveryError, KeyError):
    """A topology name that is not in the RCSR catalogue shipped by pormake."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown topology"


class IncompatibleCombinationError(DiscoveryError):
    """A (topology, node BBs, edge BBs) recipe that cannot be assembled; the message says why."""


class AssemblyError(DiscoveryError):
    """pormake failed while assembling a compatible recipe."""


class StructureReadError(DiscoveryError):
    """A structure file that cannot be read: missing, unparsable, or with unknown elements."""


class GeometryError(DiscoveryError):
    """Zeo++ could not analyse a structure (crash, timeout or unreadable output)."""


class DatasetError(DiscoveryError):
    """A dataset directory that is inconsistent with the requested build."""


class EmbeddingError(DiscoveryError):
    """Building-block embeddings that cannot serve a request (no BB matches a decode filter, a bad file)."""


class CGAssemblyError(DiscoveryError):
    """A coarse-grained sample that cannot be turned into atoms; the message says why."""
