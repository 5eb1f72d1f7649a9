"""OCPI 2.2.1 routes under /ocpi/ (config/urls.py). Trailing slashes are optional: parties differ."""

from django.urls import re_path

from apps.roaming.api import views

V = r"^2\.2\.1"
ID = r"[^/]{1,36}"

urlpatterns = [
    re_path(r"^versions/?$", views.versions, name="ocpi-versions"),
    re_path(V + r"/?$", views.version_details, name="ocpi-version-details"),
    re_path(V + r"/credentials/?$", views.credentials_endpoint, name="ocpi-credentials"),
    re_path(V + r"/locations/?$", views.locations, name="ocpi-locations"),
    re_path(V + rf"/locations/(?P<location_id>{ID})/?$", views.location_detail, name="ocpi-location"),
    re_path(
        V + rf"/locations/(?P<location_id>{ID})/(?P<evse_uid>{ID})/?$", views.evse_detail, name="ocpi-evse"
    ),
    re_path(
        V + rf"/locations/(?P<location_id>{ID})/(?P<evse_uid>{ID})/(?P<connector_id>{ID})/?$",
        views.connector_detail,
        name="ocpi-connector",
    ),
    re_path(V + r"/tariffs/?$", views.tariffs, name="ocpi-tariffs"),
    re_path(V + r"/sessions/?$", views.sessions, name="ocpi-sessions"),
    re_path(V + r"/cdrs/?$", views.cdrs, name="ocpi-cdrs"),
    re_path(
        V + rf"/tokens/(?P<country_code>[A-Za-z]{{2}})/(?P<party_id>[A-Za-z0-9]{{3}})/(?P<uid>{ID})/?$",
        views.token_detail,
        name="ocpi-token",
    ),
    re_path(V + r"/commands/(?P<command_name>[A-Z_]{1,32})/?$", views.command, name="ocpi-command"),
]
