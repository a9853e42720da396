"""The HTTP service: FastAPI routes over the library."""

from blindmatch.service.app import create_app

__all__ = ["create_app"]
