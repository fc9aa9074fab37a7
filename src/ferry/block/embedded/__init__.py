"""The embedded cluster: a directory with RBD's semantics (ferry's default backend)."""

from ferry.block.embedded.cluster import POOLS, EmbeddedCluster
from ferry.block.embedded.maintenance import CheckReport, GcReport

__all__ = ["POOLS", "CheckReport", "EmbeddedCluster", "GcReport"]
