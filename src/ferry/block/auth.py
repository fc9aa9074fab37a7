"""cephx-style identities: keys in Ceph's format, keyring files, and OSD caps.

A key is base64 of a 12-byte header packed ``<hiih`` (type 1 = AES, creation seconds,
nanoseconds, secret length 16) followed by 16 random bytes: the kind ``ceph auth import``
accepts. Caps follow Ceph's OSD cap grammar for the forms operators use with RBD::

    allow *                     every pool, read and write
    allow r|rw|rx|rwx [pool=P]  the named access, on P or on every pool
    profile rbd [pool=P]        read and write (what Nova, Cinder and Glance are given)
    profile rbd-read-only [pool=P]
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from ferry.errors import Forbidden, InvalidRequest
from ferry.permissions import write_private

_KEY_HEADER = struct.Struct("<hiih")
_SECRET_LEN = 16


def generate_key(now: float | None = None) -> str:
    """A new random key in Ceph's base64 format."""
    created = int(time.time() if now is None else now)
    raw = _KEY_HEADER.pack(1, created, 0, _SECRET_LEN) + secrets.token_bytes(_SECRET_LEN)
    return base64.b64encode(raw).decode("ascii")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed Ceph key, else raise InvalidRequest."""
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError as exc:
        raise InvalidRequest("key is not valid base64") from exc
    if len(raw) != _KEY_HEADER.size + _SECRET_LEN:
        raise InvalidRequest(f"key must decode to 28 bytes, not {len(raw)}")
    kind, _, _, length = _KEY_HEADER.unpack_from(raw)
    if kind != 1 or length != _SECRET_LEN:
        raise InvalidRequest("key header must say type 1 (AES) and a 16-byte secret")
    return key


def keys_equal(a: str, b: str) -> bool:
    """Compare two keys in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Grant:
    """One OSD grant: read and/or write, on one pool or (``pool is None``) on all."""

    read: bool
    write: bool
    pool: str | None = None


_GRANT = re.compile(
    r"^(?:allow\s+(?P<star>\*)"
    r"|allow\s+(?P<perm>[rwx]+)(?:\s+pool=(?P<apool>[^\s,;]+))?"
    r"|profile\s+(?P<profile>rbd|rbd-read-only)(?:\s+pool=(?P<ppool>[^\s,;]+))?)$"
)


@dataclass(frozen=True)
class OsdCaps:
    """Parsed OSD caps; ``allows(pool, write=...)`` is the only question asked of them."""

    text: str
    grants: tuple[Grant, ...]

    @classmethod
    def parse(cls, text: str) -> OsdCaps:
        grants = []
        for part in re.split(r"[,;]", text):
            part = " ".join(part.split())
            if not part:
                continue
            m = _GRANT.match(part)
            if not m:
                raise InvalidRequest(f"cannot parse osd cap {part!r}")
            if m["star"]:
                grants.append(Grant(read=True, write=True))
            elif m["perm"]:
                perm = m["perm"]
                grants.append(Grant(read="r" in perm, write="w" in perm, pool=m["apool"]))
            else:
                grants.append(Grant(read=True, write=m["profile"] == "rbd", pool=m["ppool"]))
        return cls(text, tuple(grants))

    def allows(self, pool: str, *, write: bool) -> bool:
        return any(
            (g.pool is None or g.pool == pool) and g.read and (g.write or not write)
            for g in self.grants
        )


@dataclass(frozen=True)
class Client:
    """A client of a cluster: ``client.NAME``, its key and its caps per service."""

    name: str
    key: str
    caps: dict[str, str] = field(default_factory=dict)

    @property
    def entity(self) -> str:
        return f"client.{self.name}"

    @property
    def osd(self) -> OsdCaps:
        return OsdCaps.parse(self.caps.get("osd", ""))

    @property
    def is_admin(self) -> bool:
        """May manage clients: Ceph requires ``mon 'allow *'`` for ``auth`` commands."""
        return " ".join(self.caps.get("mon", "").split()) == "allow *"

    def require(self, pool: str, *, write: bool) -> None:
        """Raise Forbidden unless the OSD caps give this access to ``pool``."""
        if not self.osd.allows(pool, write=write):
            access = "write" if write else "read"
            raise Forbidden(
                f"client.{self.name} may not {access} pool {pool!r} "
                f"(osd caps: {self.caps.get('osd') or 'none'}): Operation not permitted"
            )


def client_name(entity: str) -> str:
    """``client.external`` or ``external`` → ``external``."""
    name = entity.removeprefix("client.")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise InvalidRequest(f"bad client name {entity!r}")
    return name


def format_keyring(clients: list[Client]) -> str:
    """Ceph's keyring text for these clients."""
    out = []
    for c in clients:
        out.append(f"[{c.entity}]\n\tkey = {c.key}\n")
        out.extend(f'\tcaps {svc} = "{cap}"\n' for svc, cap in sorted(c.caps.items()))
    return "".join(out)


def parse_keyring(text: str) -> list[Client]:
    """Parse a Ceph keyring file's text."""
    clients: list[Client] = []
    entity: str | None = None
    key = ""
    caps: dict[str, str] = {}

    def flush() -> None:
        if entity is not None:
            if not key:
                raise InvalidRequest(f"keyring section [{entity}] has no key")
            clients.append(Client(client_name(entity), key, dict(caps)))

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            flush()
            entity, key, caps = line[1:-1].strip(), "", {}
            continue
        name, eq, value = line.partition("=")
        if not eq or entity is None:
            raise InvalidRequest(f"keyring line {lineno}: expected [entity] or 'name = value'")
        name, value = name.strip(), value.strip().strip('"')
        if name == "key":
            key = validate_key(value)
        elif name.startswith("caps "):
            caps[name.removeprefix("caps ").strip()] = value
    flush()
    return clients


def read_keyring(path: Path, name: str) -> str:
    """The key of ``client.NAME`` in the keyring file at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidRequest(f"cannot read keyring {path}: {exc.strerror}") from exc
    for c in parse_keyring(text):
        if c.name == name:
            return c.key
    raise InvalidRequest(f"keyring {path} has no key for client.{name}")


def write_keyring(path: Path, clients: list[Client]) -> None:
    """Write a keyring readable by its owner only, as Ceph's tools do."""
    write_private(path, format_keyring(clients))
