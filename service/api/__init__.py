"""The HTTP layer: decode and validate requests, call the core, encode answers."""

from service.api.app import create_app

__all__ = ["create_app"]
