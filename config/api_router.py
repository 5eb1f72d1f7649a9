"""The driver API's routes under /api/v1/. Apps register their viewsets and views here."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

router = DefaultRouter()

urlpatterns = [
    *router.urls,
]

schema_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
