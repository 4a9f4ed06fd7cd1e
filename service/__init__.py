"""Self-hosted newsletter subscribe box: widget, double opt-in, one-click unsubscribe."""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "__version__", "create_app"]

__version__ = "0.1.0"
