"""Recovery: who is alive (holders), and the reconciler that finishes what the dead left."""

from ferry.recovery.holder import Heartbeat, Liveness
from ferry.recovery.reconciler import Reconciler, Report

__all__ = ["Heartbeat", "Liveness", "Reconciler", "Report"]
