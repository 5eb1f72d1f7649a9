"""The operator API's routes under /api/v1/operator/ (paths without a trailing slash)."""

from django.urls import path

from apps.ocpp_gateway.api import operator as views

urlpatterns = [
    path("charge-points", views.ChargePointListView.as_view(), name="operator-charge-points"),
    path("charge-points/<str:identity>", views.ChargePointDetailView.as_view(), name="operator-charge-point"),
    path(
        "charge-points/<str:identity>/commands",
        views.CommandSendView.as_view(),
        name="operator-charge-point-commands",
    ),
    path("commands", views.CommandListView.as_view(), name="operator-commands"),
    path("commands/<int:pk>", views.CommandDetailView.as_view(), name="operator-command"),
    path("transactions", views.TransactionListView.as_view(), name="operator-transactions"),
    path("transactions/<int:pk>", views.TransactionDetailView.as_view(), name="operator-transaction"),
    path("reservations", views.ReservationListView.as_view(), name="operator-reservations"),
    path("reservations/<int:pk>", views.ReservationDetailView.as_view(), name="operator-reservation"),
    path("charging-profiles", views.ChargingProfileListView.as_view(), name="operator-charging-profiles"),
    path(
        "charging-profiles/<int:pk>",
        views.ChargingProfileDetailView.as_view(),
        name="operator-charging-profile",
    ),
    path("tokens", views.TokenListView.as_view(), name="operator-tokens"),
    path("tokens/<int:pk>", views.TokenDetailView.as_view(), name="operator-token"),
    path("tokens/<int:pk>/block", views.TokenBlockView.as_view(), name="operator-token-block"),
    path("tokens/<int:pk>/expire", views.TokenExpireView.as_view(), name="operator-token-expire"),
    path("messages", views.MessageListView.as_view(), name="operator-messages"),
]
