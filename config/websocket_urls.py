"""WebSocket routes. The OCPP endpoint (/ocpp/<identity>) is added by apps.ocpp_gateway."""

websocket_urlpatterns: list = []
