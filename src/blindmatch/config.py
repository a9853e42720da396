"""Settings from the environment, in one place.

``BLINDMATCH_HOME``          data folder (default ``~/.local/share/blindmatch``)
``BLINDMATCH_DATABASE_URL``  SQLAlchemy URL (default SQLite in the data folder;
                             PostgreSQL for production: the ``postgres`` extra)
``BLINDMATCH_ENV``           ``dev`` (default) or ``prod``
``BLINDMATCH_ADMIN_KEY``     bootstrap API key with write scope; outside dev
                             mode it must be set and must not be the default
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from blindmatch.errors import ConfigError

DEV_ADMIN_KEY = "dev-admin-key-not-secret"
MIN_KEY_LENGTH = 24


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    env: str
    admin_key: str | None
    max_upload_bytes: int = 50 * 1024 * 1024

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
        try:
            size = int(upload)
        except ValueError:
            raise ConfigError("BLINDMATCH_MAX_UPLOAD_BYTES must be an integer") from None
        settings = Settings(settings.home, settings.database_url, mode, settings.admin_key, size)
    return settings
