from django.urls import re_path

from apps.ocpp_gateway.consumer import NotFoundConsumer, OcppConsumer

websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<identity>[^/]*)/?$", OcppConsumer.as_asgi()),
    # Last: every other path is refused with 404 (Channels' router would raise, and the server answer 500).
    re_path(r"", NotFoundConsumer.as_asgi()),
]
