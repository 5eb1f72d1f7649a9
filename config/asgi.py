"""ASGI entry point: HTTP (admin, API, health) and WebSocket (OCPP)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models (consumers do).
django.setup(set_prefix=False)

from cpo.asgi_threads import ReusedThreadsASGIHandler  # noqa: E402

# Django's ASGIHandler, with the threads of requests' synchronous code reused (see cpo.asgi_threads).
django_asgi_app = ReusedThreadsASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.websocket_urls import websocket_urlpatterns  # noqa: E402
from cpo.asgi_limits import BodyLimitMiddleware  # noqa: E402
from cpo.runtime import cache_redis_lib_version, tune_gc, tune_switch_interval  # noqa: E402

cache_redis_lib_version()  # see cpo.runtime: redis-py scanned the installed packages per new connection
tune_gc()  # see cpo.runtime: long collections (full ones, or of large young generations) stall the event loop
tune_switch_interval()  # see cpo.runtime: how long a request's thread may wait for the GIL the loop holds

application = ProtocolTypeRouter(
    {
        # Bodies over their route's limit are refused before Django reads them (cpo.asgi_limits).
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
