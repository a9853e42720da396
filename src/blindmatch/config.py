"""Settings from the environment, in one place.

``BLINDMATCH_HOME``          data folder (default ``~/.local/share/blindmatch``)
``BLINDMATCH_DATABASE_URL``  SQLAlchemy URL (default SQLite in the data folder;
                             PostgreSQL for production: the ``postgres`` extra)
``BLINDMATCH_ENV``           ``dev`` (default) or ``prod``
``BLINDMATCH_ADMIN_KEY``     bootstrap API key with write scope; outside dev
                             mode it must be set and must not be the default
``BLINDMATCH_MAX_UPLOAD_BYTES``  the service's request body cap (default 50 MB)
``BLINDMATCH_MAX_PIXELS``    the service's pixel limit per upload (default and
                             ceiling 64,000,000; ``serve --max-pixels``)
``BLINDMATCH_DECODE_BUDGET`` pixels the service decodes at once, summed over
                             concurrent uploads (default twice the pixel limit;
                             at least the pixel limit; ``serve --decode-budget``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from blindmatch.errors import ConfigError

DEV_ADMIN_KEY = "dev-admin-key-not-secret"
MIN_KEY_LENGTH = 24
MAX_PIXELS_CEILING = 64_000_000  # = hashing.image.DEFAULT_MAX_PIXELS (not imported: light)


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    env: str
    admin_key: str | None
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = MAX_PIXELS_CEILING
    decode_budget: int = 2 * MAX_PIXELS_CEILING

    @property
    def dev(self) -> bool:
        return self.env == "dev"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    def check_service_secrets(self) -> None:
        """Refuse to serve with a default or weak admin key outside dev mode."""
        if self.dev:
            return
        if not self.admin_key or self.admin_key == DEV_ADMIN_KEY:
            raise ConfigError(
                "BLINDMATCH_ADMIN_KEY must be set to a secret of your own outside dev mode"
            )
        if len(self.admin_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"BLINDMATCH_ADMIN_KEY must be at least {MIN_KEY_LENGTH} characters")

    def effective_admin_key(self) -> str | None:
        if self.admin_key:
            return self.admin_key
        return DEV_ADMIN_KEY if self.dev else None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("BLINDMATCH_HOME") or Path.home() / ".local" / "share" / "blindmatch")
    mode = env.get("BLINDMATCH_ENV", "dev").strip().lower()
    if mode not in ("dev", "prod"):
        raise ConfigError(f"BLINDMATCH_ENV must be 'dev' or 'prod', not {mode!r}")
    url = env.get("BLINDMATCH_DATABASE_URL") or f"sqlite:///{home / 'blindmatch.db'}"
    upload = env.get("BLINDMATCH_MAX_UPLOAD_BYTES")
    settings = Settings(
        home=home,
        database_url=url,
        env=mode,
        admin_key=env.get("BLINDMATCH_ADMIN_KEY") or None,
    )
    if upload:
        settings = replace(
            settings, max_upload_bytes=_positive(upload, "BLINDMATCH_MAX_UPLOAD_BYTES")
        )
    pixels = env.get("BLINDMATCH_MAX_PIXELS")
    budget = env.get("BLINDMATCH_DECODE_BUDGET")
    return with_pixel_limits(
        settings,
        _positive(pixels, "BLINDMATCH_MAX_PIXELS") if pixels else None,
        _positive(budget, "BLINDMATCH_DECODE_BUDGET") if budget else None,
    )


def with_pixel_limits(
    settings: Settings, max_pixels: int | None = None, decode_budget: int | None = None
) -> Settings:
    """``settings`` with the service's pixel limit and decode budget checked: the limit
    may only be lowered (to at most 64 MP), and the budget must hold one image at the
    limit (it defaults to two)."""
    pixels = settings.max_pixels if max_pixels is None else max_pixels
    if not 1 <= pixels <= MAX_PIXELS_CEILING:
        raise ConfigError(f"the pixel limit must be between 1 and {MAX_PIXELS_CEILING:,}")
    budget = 2 * pixels if decode_budget is None else decode_budget
    if budget < pixels:
        raise ConfigError(
            f"the decode budget ({budget:,} pixels) must hold one image at the pixel limit "
            f"({pixels:,})"
        )
    return replace(settings, max_pixels=pixels, decode_budget=budget)


def _positive(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {text!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be positive, not {value}")
    return value
