"""Self-hosted newsletter subscribe box: widget, double opt-in, one-click unsubscribe."""

from service._version import __version__
from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
