"""ferry's one error tree.

Every layer raises these; drivers translate native errors (``rbd.*``, ``OSError``) at their
boundary, chained with ``from exc``. The API maps classes to HTTP statuses in one table, the
CLI to exit codes in one table::

    FerryError
    ├── NotFound             the named thing does not exist
    ├── NoData               the image has no data yet
    ├── AlreadyExists        the name is taken
    ├── InUse                has snapshots, children or a protected snapshot
    ├── Conflict             the state forbids it now (e.g. unprotected snapshot as parent)
    │   ├── Cancelled        the work stopped: what it worked on was deleted
    │   └── ImportBusy       the image already has an unfinished import
    ├── InvalidRequest       malformed input
    │   ├── FormatMismatch   the data is not in the format the image claims
    │   └── TooLarge         over a configured limit (size cap, quota, body size)
    ├── Forbidden            the client's caps or key do not allow it (Ceph's EPERM)
    │   └── ReadOnlyStore    the store takes no new data
    ├── StorageFull          no space left on the cluster
    ├── BackendUnavailable   the cluster cannot be reached
    └── IntegrityError       stored data does not match its hash or references
"""

from __future__ import annotations


class FerryError(Exception):
    """Base of every error ferry raises on purpose."""


class NotFound(FerryError):
    """The named thing does not exist."""


class AlreadyExists(FerryError):
    """The name is taken."""


class InUse(FerryError):
    """The thing has snapshots, children or protected snapshots."""


class Conflict(FerryError):
    """The current state forbids the operation."""


class ImportBusy(Conflict):
    """The image already has an unfinished import task."""


class InvalidRequest(FerryError):
    """The request is malformed."""


class Unauthenticated(FerryError):
    """No token, or one Keystone does not accept (401)."""


class Forbidden(FerryError):
    """The client's key or caps do not allow this."""


class StorageFull(FerryError):
    """No space is left on the cluster."""


class BackendUnavailable(FerryError):
    """The cluster cannot be reached."""


class IntegrityError(FerryError):
    """Stored data does not match its hash or its references."""


class NoData(FerryError):
    """The image has no data yet."""


class FormatMismatch(InvalidRequest):
    """The data is not in the format the image claims."""


class TooLarge(InvalidRequest):
    """The request, or what it would store, is over a configured limit."""


class ReadOnlyStore(Forbidden):
    """The store takes no new data."""


class Cancelled(Conflict):
    """The work stopped because what it worked on was deleted meanwhile."""
