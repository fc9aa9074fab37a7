"""Who is asking: the request context, Keystone token validation, and policy."""

from ferry.identity.context import Context

__all__ = ["Context"]
