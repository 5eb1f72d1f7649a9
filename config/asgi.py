"""ASGI entry point: HTTP (admin, API, health) and WebSocket (OCPP)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.websocket_urls import websocket_urlpatterns  # noqa: E402
from cpo.asgi_limits import BodyLimitMiddleware  # noqa: E402
from cpo.runtime import cache_redis_lib_version, tune_gc  # noqa: E402

cache_redis_lib_version()  # see cpo.runtime: redis-py scanned the installed packages per new connection
tune_gc()  # see cpo.runtime: long collections (full ones, or of large young generations) stall the event loop

application = ProtocolTypeRouter(
    {
        # Bodies over their route's limit are refused before Django reads them (cpo.asgi_limits).
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
