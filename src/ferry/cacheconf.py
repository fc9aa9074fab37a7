"""A site's image cache settings (``sites.NAME.cache``), as Glance's ``image_cache_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ferry.confbase import Frozen, relative_to_file


class CacheConfig(Frozen):
    """Where a site keeps local copies of images whose data lives in slower stores."""

    enabled: bool = Field(
        True,
        description="Serve /v2/cache and keep queued images' data on this site's disk; off, "
        "the cache API answers 404 as Glance's does without image_cache_dir.",
    )
    directory: Path | None = Field(
        None,
        description="Glance's image_cache_dir: private to ferry (0700), on local disk "
        "(default: ferry-cache-<site> beside the site's imports staging directory).",
    )
    max_size: int = Field(
        10 << 30,
        ge=0,
        description="Glance's image_cache_max_size, in bytes (default 10 GiB): filling past "
        "it first evicts the least recently used images; a larger image is never cached.",
    )

    _paths = field_validator("directory")(relative_to_file)
