"""What every section of a topology shares: frozen models, paths relative to the file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def relative_to_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths in a topology file are relative to the file's directory."""
    base = (info.context or {}).get("base")
    if value is None or base is None or value.is_absolute():
        return value
    return Path(base) / value
