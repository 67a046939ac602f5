"""The web UI of the raypipe service: pages at ``/``, their data under ``/ui/api``.

See :func:`raypipe.api.ui.router.ui_router` and docs/ui.md.
"""

from raypipe.api.ui.router import ui_router

__all__ = ["ui_router"]
