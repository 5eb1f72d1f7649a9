"""WebSocket routes: the operations dashboard's live feed (staff, by the admin's session) and the OCPP
endpoint /ocpp/<identity> (whose last route refuses every other path)."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from apps.console.consumer import DashboardConsumer
from apps.ocpp_gateway.routing import websocket_urlpatterns as ocpp_urlpatterns

websocket_urlpatterns = [
    # Sessions and CSRF-like protection for a cookie-authenticated socket: only pages of our own hosts.
    re_path(
        r"^admin/console/live/$",
        AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi())),
    ),
    *ocpp_urlpatterns,
]
