"""WebSocket routes: the OCPP endpoint /ocpp/<identity>."""

from apps.ocpp_gateway.routing import websocket_urlpatterns

__all__ = ["websocket_urlpatterns"]
