from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.accounts import views as account_views
from apps.accounts.forms import AdminLoginForm
from config.api_router import schema_urlpatterns
from cpo import health, metrics

admin.site.site_header = "CPO"
admin.site.site_title = "CPO operations"
admin.site.index_title = "Operations"
# Sign-in failures are throttled and audited (apps.accounts.login_throttle).
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("livez", health.livez, name="livez"),
    path("readyz", health.readyz, name="readyz"),
    path("healthz", health.readyz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # The operator API (staff API tokens), apart from the driver API's routes.
    path("api/v1/operator/", include("apps.ocpp_gateway.api.operator_urls")),
    path("api/v1/", include("config.api_router")),
    path("api/", include(schema_urlpatterns)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/verify-email/<uidb64>/<token>/", account_views.verify_email, name="verify-email"),
    path("ocpp/", include("apps.ocpp_gateway.urls")),
    path("webhooks/", include("apps.billing.urls")),
    path("ocpi/", include("apps.roaming.api.urls")),
]

# Not under i18n_patterns: with prefix_default_language=False, LocaleMiddleware ignores Accept-Language
# and the language cookie on unprefixed paths, so staff would always get English. Plain paths take the
# language from the cookie set by /i18n/setlang/ or from the browser's Accept-Language.
urlpatterns += [
    path(
        "admin/password_reset/", account_views.AdminPasswordResetView.as_view(), name="admin_password_reset"
    ),
    path(
        "admin/password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("admin/", admin.site.urls),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
