"""ASGI entry point: HTTP (admin, API, health) and WebSocket (OCPP)."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.websocket_urls import websocket_urlpatterns  # noqa: E402

# A gateway process holds hundreds of thousands of long-lived objects (connections, tasks, queues); with the
# default thresholds full collections of them stalled the event loop for 0.75-1.8 s each (benchmarks).
# Freeze what start-up created and collect the old generation less often (CPO_GC_THRESHOLDS="" keeps defaults).
_thresholds = os.environ.get("CPO_GC_THRESHOLDS", "50000,20,100")
if _thresholds:
    gc.freeze()
    gc.set_threshold(*(int(n) for n in _thresholds.split(",")))

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
