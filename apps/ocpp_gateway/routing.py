from django.urls import re_path

from apps.ocpp_gateway.consumer import OcppConsumer

websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<identity>[^/]*)/?$", OcppConsumer.as_asgi()),
]
