"""NCMEC CyberTipline settings, from the environment (like :mod:`blindmatch.config`).

``BLINDMATCH_NCMEC_URL``            the ISP web services base URL (default NCMEC's TEST
                                    environment, :data:`TEST_URL`; production is
                                    :data:`PRODUCTION_URL` and must be set on purpose)
``BLINDMATCH_NCMEC_USER``           the ESP's CyberTipline user name
``BLINDMATCH_NCMEC_PASSWORD_FILE``  a file holding its password (first line)
``BLINDMATCH_NCMEC_REPORTER_FIRST_NAME``, ``…_LAST_NAME``, ``…_EMAIL``, ``…_PHONE``
                                    the reporting person NCMEC may contact (``reporter``)
``BLINDMATCH_NCMEC_COMPANY_TEMPLATE``, ``…_TERMS_OF_SERVICE``, ``…_LEGAL_URL``
                                    optional reporter fields
``BLINDMATCH_NCMEC_ESP_SERVICE``    the service named in ``espService`` (default "Matrix")
``BLINDMATCH_NCMEC_TIMEOUT``        seconds per HTTP request (default 30)
``BLINDMATCH_NCMEC_MAX_ATTEMPTS``   transient failures before a report is given up (12)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from blindmatch.errors import ConfigError

TEST_URL = "https://exttest.cybertip.org/ispws"
PRODUCTION_URL = "https://report.cybertip.org/ispws"


@dataclass(frozen=True)
class Reporter:
    """The platform's reporting person (``reporter/reportingPerson``)."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company_template: str | None = None
    terms_of_service: str | None = None
    legal_url: str | None = None


@dataclass(frozen=True)
class NcmecConfig:
    reporter: Reporter
    base_url: str = TEST_URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    esp_service: str = "Matrix"
    chat_client: str = "Matrix (end-to-end encrypted)"
    timeout: float = 30.0
    max_attempts: int = 12  # transient failures in a row before a report is given up
    backoff_base: float = 30.0  # seconds; doubles per failed attempt
    backoff_max: float = 3600.0

    @property
    def environment(self) -> str:
        """``test``, ``production`` or ``other`` (e.g. a local conformance server)."""
        url = self.base_url.rstrip("/")
        if url == TEST_URL:
            return "test"
        if url == PRODUCTION_URL:
            return "production"
        return "other"

    def credentials(self) -> tuple[str, str]:
        if not self.username or self.password is None:
            raise ConfigError(
                "NCMEC credentials are not set: BLINDMATCH_NCMEC_USER and "
                "BLINDMATCH_NCMEC_PASSWORD_FILE"
            )
        return self.username, self.password


def load_ncmec_config(environ: dict[str, str] | None = None) -> NcmecConfig:
    env = dict(os.environ if environ is None else environ)

    def opt(name: str) -> str | None:
        v = env.get(name, "").strip()
        return v or None

    email = opt("BLINDMATCH_NCMEC_REPORTER_EMAIL")
    if email is None:
        raise ConfigError(
            "BLINDMATCH_NCMEC_REPORTER_EMAIL must be set: NCMEC needs a reporting person to "
            "contact (also BLINDMATCH_NCMEC_REPORTER_FIRST_NAME / _LAST_NAME)"
        )
    reporter = Reporter(
        email=email,
        first_name=opt("BLINDMATCH_NCMEC_REPORTER_FIRST_NAME"),
        last_name=opt("BLINDMATCH_NCMEC_REPORTER_LAST_NAME"),
        phone=opt("BLINDMATCH_NCMEC_REPORTER_PHONE"),
        company_template=opt("BLINDMATCH_NCMEC_COMPANY_TEMPLATE"),
        terms_of_service=opt("BLINDMATCH_NCMEC_TERMS_OF_SERVICE"),
        legal_url=opt("BLINDMATCH_NCMEC_LEGAL_URL"),
    )
    password = None
    pw_file = opt("BLINDMATCH_NCMEC_PASSWORD_FILE")
    if pw_file:
        try:
            password = Path(pw_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise ConfigError(f"BLINDMATCH_NCMEC_PASSWORD_FILE {pw_file!r}: {e}") from None
    url = opt("BLINDMATCH_NCMEC_URL") or TEST_URL
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigError(
            f"BLINDMATCH_NCMEC_URL must be https:// (or http:// to localhost), not {url!r}"
        )
    return NcmecConfig(
        reporter=reporter,
        base_url=url.rstrip("/"),
        username=opt("BLINDMATCH_NCMEC_USER"),
        password=password,
        esp_service=opt("BLINDMATCH_NCMEC_ESP_SERVICE") or "Matrix",
        timeout=_positive_float(env, "BLINDMATCH_NCMEC_TIMEOUT", 30.0),
        max_attempts=int(_positive_float(env, "BLINDMATCH_NCMEC_MAX_ATTEMPTS", 12)),
    )


def _positive_float(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if v <= 0:
        raise ConfigError(f"{name} must be positive, not {text}")
    return v
