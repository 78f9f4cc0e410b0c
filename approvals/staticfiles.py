"""Serving the dashboard's own static files (htmx, CSS, JS): no CDN and no extra web server."""

from __future__ import annotations

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, reading the apps' ``static/`` folders (``WHITENOISE_USE_FINDERS``).

    ``STATIC_ROOT`` is served too once ``collectstatic`` has filled it; until then it is skipped
    quietly instead of warning on every start.
    """

    def add_files(self, root, prefix=None):
        if self.autorefresh or os.path.isdir(root):
            super().add_files(root, prefix)
