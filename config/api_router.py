"""The driver API's routes under /api/v1/ (paths without a trailing slash), the schema and its docs. The
operator API (/api/v1/operator/) has its own routes: apps/ocpp_gateway/api/operator_urls.py."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.accounts.api import views as accounts
from apps.billing.api import views as billing
from apps.charging.api import views as charging
from apps.reservations.api import views as reservations
from apps.smartcharging.api import views as smartcharging
from apps.stations.api import views as stations

urlpatterns = [
    path("auth/register", accounts.RegisterView.as_view(), name="api-register"),
    path("auth/token", accounts.LoginView.as_view(), name="api-token"),
    path("auth/token/refresh", accounts.RefreshView.as_view(), name="api-token-refresh"),
    path("auth/logout", accounts.LogoutView.as_view(), name="api-logout"),
    path("auth/password/reset", accounts.PasswordResetView.as_view(), name="api-password-reset"),
    path(
        "auth/password/reset/confirm",
        accounts.PasswordResetConfirmView.as_view(),
        name="api-password-reset-confirm",
    ),
    path("auth/email/verify", accounts.EmailVerifyView.as_view(), name="api-email-verify"),
    path("auth/email/resend", accounts.EmailResendView.as_view(), name="api-email-resend"),
    path("me", accounts.MeView.as_view(), name="api-me"),
    path("me/export", charging.MeExportView.as_view(), name="api-me-export"),
    path("tokens", accounts.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:pk>", accounts.TokenDetailView.as_view(), name="api-token-detail"),
    path("tokens/links/<int:pk>", accounts.CardLinkDetailView.as_view(), name="api-token-link"),
    path("chargers/nearby", stations.NearbyView.as_view(), name="api-chargers-nearby"),
    path("chargers/<int:pk>", stations.ChargerDetailView.as_view(), name="api-charger-detail"),
    path("reservations", reservations.ReservationListView.as_view(), name="api-reservations"),
    path(
        "reservations/<int:pk>",
        reservations.ReservationDetailView.as_view(),
        name="api-reservation-detail",
    ),
    path("sessions", charging.SessionListView.as_view(), name="api-sessions"),
    path("sessions/<int:pk>", charging.SessionDetailView.as_view(), name="api-session-detail"),
    path("sessions/<int:pk>/stop", charging.SessionStopView.as_view(), name="api-session-stop"),
    path("sessions/<int:pk>/live", charging.session_live, name="api-session-live"),
    path(
        "sessions/<int:pk>/receipt",
        charging.SessionReceiptView.as_view(),
        name="api-session-receipt",
    ),
    path(
        "payment-methods/setup-intent",
        billing.SetupIntentView.as_view(),
        name="api-payment-method-setup-intent",
    ),
    path("payment-methods", billing.PaymentMethodListView.as_view(), name="api-payment-methods"),
    path(
        "payment-methods/<int:pk>",
        billing.PaymentMethodDetailView.as_view(),
        name="api-payment-method-detail",
    ),
    path(
        "payment-methods/<int:pk>/default",
        billing.PaymentMethodDefaultView.as_view(),
        name="api-payment-method-default",
    ),
    path("payments/<int:pk>/retry", billing.PaymentRetryView.as_view(), name="api-payment-retry"),
    path("grid-events", smartcharging.GridEventListView.as_view(), name="api-grid-events"),
    path("grid-events/<int:pk>", smartcharging.GridEventDetailView.as_view(), name="api-grid-event-detail"),
]

schema_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
