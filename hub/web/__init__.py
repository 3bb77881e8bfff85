"""The web app: the webhook door, pages and the REST API, on Flask.

``hub.web:create_app()`` is the WSGI factory (gunicorn, waitress); the app itself is in ``hub/web/app.py``.
"""

from hub.web.app import create_app

__all__ = ["create_app"]
