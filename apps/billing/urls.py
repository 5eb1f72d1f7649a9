"""Webhooks from payment providers, under /webhooks/ (outside the driver API: no JWT, no CSRF)."""

from django.urls import path

from apps.billing import views

app_name = "billing"

urlpatterns = [
    path("stripe/", views.stripe_webhook, name="stripe-webhook"),
]
