"""``Policy``: oslo.policy's enforcer over ferry's defaults and the operator's policy file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_policy import policy as oslo

from ferry.errors import Forbidden, InvalidRequest
from ferry.identity.context import Context
from ferry.identity.rules import DEFAULTS


class Policy:
    """Decide whether a context may do an action on a target.

    The policy file (YAML or JSON, Glance's format) overrides rules by name; a rule it does not
    name keeps ferry's default. The file is read at start: a bad file stops the site there.
    """

    def __init__(self, policy_file: Path | None = None) -> None:
        conf = cfg.ConfigOpts()
        conf([], project="ferry", default_config_files=[], default_config_dirs=[])
        if policy_file is not None and not policy_file.is_file():
            raise InvalidRequest(f"policy file {policy_file} does not exist")
        self.enforcer = oslo.Enforcer(
            conf, policy_file=str(policy_file) if policy_file else "ferry-policy-none.yaml"
        )
        self.enforcer.register_defaults(DEFAULTS)
        try:
            self.enforcer.load_rules()
        except Exception as exc:  # oslo raises parse errors of several kinds
            raise InvalidRequest(f"policy file {policy_file}: {exc}") from exc
        unknown = sorted(set(self.enforcer.file_rules) - {r.name for r in DEFAULTS})
        self.unknown_rules = unknown  # named in the file, used by nothing here: logged at start

    def check(self, ctx: Context, action: str, target: dict[str, Any]) -> bool:
        """Whether ``ctx`` may do ``action`` on ``target``."""
        return bool(self.enforcer.enforce(action, target, ctx.credentials()))

    def enforce(self, ctx: Context, action: str, target: dict[str, Any]) -> None:
        """Raise ``Forbidden`` unless ``ctx`` may do ``action`` on ``target``."""
        if not self.check(ctx, action, target):
            raise Forbidden(f"You are not authorized to complete {action} action.")
