"""Self-hosted newsletter subscribe box: widget, double opt-in, one-click unsubscribe.

Importing the package loads nothing else: the command line's ``--help`` and each module's
importers pay only for what they use. The app factory is ``service.app.create_app``.
"""

from service._version import __version__

__all__ = ["__version__"]
