"""The driver API's routes under /api/v1/ (paths without a trailing slash), the schema and its docs."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.accounts.api import views as accounts
from apps.billing.api import views as billing
from apps.charging.api import views as charging
from apps.stations.api import views as stations
from cpo.api import parallel_view

urlpatterns = [
    path("auth/register", parallel_view(accounts.RegisterView.as_view()), name="api-register"),
    path("auth/token", parallel_view(accounts.LoginView.as_view()), name="api-token"),
    path("auth/token/refresh", parallel_view(accounts.RefreshView.as_view()), name="api-token-refresh"),
    path("auth/logout", parallel_view(accounts.LogoutView.as_view()), name="api-logout"),
    path(
        "auth/password/reset", parallel_view(accounts.PasswordResetView.as_view()), name="api-password-reset"
    ),
    path(
        "auth/password/reset/confirm",
        parallel_view(accounts.PasswordResetConfirmView.as_view()),
        name="api-password-reset-confirm",
    ),
    path("auth/email/verify", parallel_view(accounts.EmailVerifyView.as_view()), name="api-email-verify"),
    path("auth/email/resend", parallel_view(accounts.EmailResendView.as_view()), name="api-email-resend"),
    path("me", parallel_view(accounts.MeView.as_view()), name="api-me"),
    path("me/export", parallel_view(charging.MeExportView.as_view()), name="api-me-export"),
    path("tokens", parallel_view(accounts.TokenListView.as_view()), name="api-tokens"),
    path("tokens/<int:pk>", parallel_view(accounts.TokenDetailView.as_view()), name="api-token-detail"),
    path(
        "tokens/links/<int:pk>", parallel_view(accounts.CardLinkDetailView.as_view()), name="api-token-link"
    ),
    path("chargers/nearby", parallel_view(stations.NearbyView.as_view()), name="api-chargers-nearby"),
    path("chargers/<int:pk>", parallel_view(stations.ChargerDetailView.as_view()), name="api-charger-detail"),
    path("sessions", parallel_view(charging.SessionListView.as_view()), name="api-sessions"),
    path("sessions/<int:pk>", parallel_view(charging.SessionDetailView.as_view()), name="api-session-detail"),
    path(
        "sessions/<int:pk>/stop", parallel_view(charging.SessionStopView.as_view()), name="api-session-stop"
    ),
    path("sessions/<int:pk>/live", charging.session_live, name="api-session-live"),
    path(
        "sessions/<int:pk>/receipt",
        parallel_view(charging.SessionReceiptView.as_view()),
        name="api-session-receipt",
    ),
    path(
        "payment-methods/setup-intent",
        parallel_view(billing.SetupIntentView.as_view()),
        name="api-payment-method-setup-intent",
    ),
    path(
        "payment-methods", parallel_view(billing.PaymentMethodListView.as_view()), name="api-payment-methods"
    ),
    path(
        "payment-methods/<int:pk>",
        parallel_view(billing.PaymentMethodDetailView.as_view()),
        name="api-payment-method-detail",
    ),
    path(
        "payment-methods/<int:pk>/default",
        parallel_view(billing.PaymentMethodDefaultView.as_view()),
        name="api-payment-method-default",
    ),
    path(
        "payments/<int:pk>/retry", parallel_view(billing.PaymentRetryView.as_view()), name="api-payment-retry"
    ),
]

schema_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
