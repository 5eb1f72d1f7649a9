"""HTTP endpoints for chargers, under /ocpp/: diagnostics uploads and firmware downloads. (The
WebSocket endpoint /ocpp/<identity> is routed in routing.py.)"""

from django.urls import path

from apps.ocpp_gateway import views

app_name = "ocpp_gateway"

urlpatterns = [
    path("uploads/diagnostics/<str:token>/", views.diagnostics_upload, name="diagnostics-upload"),
    # Chargers that PUT append their file name; some leave the trailing slash off.
    path(
        "uploads/diagnostics/<str:token>/<str:filename>",
        views.diagnostics_upload,
        name="diagnostics-upload-file",
    ),
    path("uploads/diagnostics/<str:token>", views.diagnostics_upload, name="diagnostics-upload-bare"),
    path("firmware/<uuid:public_id>/<str:filename>", views.firmware_download, name="firmware-download"),
]
