"""The operator API (/api/v1/operator/): for integrators of the CPO's own systems, with a staff API token
(`Authorization: Token <key>`, apps.accounts.api.authentication.StaffTokenAuthentication) acting as that
staff member: their roles decide what they may do (403 otherwise, checked first) and their organisations
what they see (another organisation's charger, command, session or token is 404, as an unknown one).
Lists answer 404 for a cursor that is not theirs (the pagination's own answer, as in the driver API).

Commands go through the one command service (`command_send`), as the admin's and `ocpp_call`'s do: the
answer comes at once with the command's id (201), its outcome is read with GET commands/{id}. Writes are
audited by the services they call (one record each). Lists are cursor-paginated.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services as accounts_services
from apps.accounts.api.authentication import StaffTokenAuthentication
from apps.accounts.models import ApiToken, IdToken, Organisation
from apps.accounts.tenancy import organisation_ids_for, sees_everything
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.api import operator_serializers as s
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.commands_catalog import catalogue_for
from apps.ocpp_gateway.models import OcppCommand, OcppMessage
from apps.ocpp_gateway.services import command_send
from apps.reservations.models import Reservation
from apps.smartcharging.models import ChargingLimit
from apps.stations.models import ChargePoint, Connector, Evse
from cpo import clock
from cpo.api import CursorPagination, error_responses, validated
from cpo.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from cpo.public_url import public_base_url

TAGS = ["operator"]


class OperatorPermission(BasePermission):
    """Only a request authenticated with a staff API token of an active staff member, holding every
    permission the view names for the request's method (`operator_permissions`)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not isinstance(request.auth, ApiToken) or not (user.is_active and user.is_staff):
            return False
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = getattr(view, "operator_permissions", {}).get(method)
        return needed is not None and user.has_perms(needed)


class OperatorView:
    """What every operator API view shares: staff tokens only, role permissions per method."""

    authentication_classes: ClassVar[list[Any]] = [StaffTokenAuthentication]
    permission_classes: ClassVar[list[Any]] = [OperatorPermission]
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {}


def _filters(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    """The query's filters, checked (400 naming the parameter). A plain dict, not the QueryDict: DRF reads
    a missing boolean of form-like input as False, where a missing filter must mean "any"."""
    return validated(serializer_class, request.query_params.dict())


def _paginated(ordering: tuple[str, ...]) -> type[CursorPagination]:
    return type("OperatorCursorPagination", (CursorPagination,), {"ordering": ordering})


def charge_point_visible(*, user: Any, identity: str) -> ChargePoint:
    """The charger `identity` among those `user` may see; NotFound (404) for any other, known or not."""
    charge_point = ChargePoint.objects.for_actor(user).filter(identity=identity).first()
    if charge_point is None:
        raise NotFound(
            _("No charge point {identity} that you may see.").format(identity=identity),
            code="charge_point_not_found",
        )
    return charge_point


def _with_presence(charge_points: Iterable[ChargePoint]) -> list[ChargePoint]:
    """The chargers with their live presence set on them (online, connected_at, last_frame_at)."""
    charge_points = list(charge_points)
    live = presence.lookup_many([charge_point.identity for charge_point in charge_points])
    for charge_point in charge_points:
        holder = live.get(charge_point.identity)
        charge_point.online = holder is not None  # type: ignore[attr-defined]
        charge_point.connected_at = _at(holder.connected_at) if holder else None  # type: ignore[attr-defined]
        charge_point.last_frame_at = _at(holder.last_frame_at) if holder else None  # type: ignore[attr-defined]
    return charge_points


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _charge_points(user: Any) -> QuerySet:
    connectors = Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
    evses = Prefetch("evses", queryset=Evse.objects.order_by("evse_id").prefetch_related(connectors))
    return ChargePoint.objects.for_actor(user).select_related("organisation").prefetch_related(evses)


# --- charge points -----------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="Charge points with live status",
        description="Your organisations' chargers, with presence (online now, since when, last frame) and "
        "each connector's last reported status. `online=true|false` filters by live presence (after "
        "the page is read).",
        parameters=[s.OperatorChargePointFilter],
        responses={200: s.OperatorChargePointOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ChargePointListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("stations.view_chargepoint",)}
    serializer_class = s.OperatorChargePointOutput
    queryset = ChargePoint.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("identity",))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorChargePointFilter, self.request)
        queryset = _charge_points(self.request.user)
        if filters.get("location"):
            queryset = queryset.filter(location_id=filters["location"])
        return queryset

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filters = _filters(s.OperatorChargePointFilter, request)
        page = _with_presence(self.paginate_queryset(self.get_queryset()) or [])
        if filters.get("online") is not None:
            page = [cp for cp in page if cp.online is filters["online"]]  # type: ignore[attr-defined]
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="One charge point with live status",
        description="404 charge_point_not_found for an unknown identity or another organisation's.",
        responses={200: s.OperatorChargePointOutput, **error_responses(401, 403, 404)},
    )
)
class ChargePointDetailView(OperatorView, APIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("stations.view_chargepoint",)}

    def get(self, request: Request, identity: str) -> Response:
        charge_point = _charge_points(request.user).filter(identity=identity).first()
        if charge_point is None:
            charge_point_visible(user=request.user, identity=identity)  # raises the 404
        return Response(s.OperatorChargePointOutput(_with_presence([charge_point])[0]).data)


# --- commands ----------------------------------------------------------------------------------------


class CommandSendView(OperatorView, APIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"POST": ("ocpp_gateway.add_ocppcommand",)}

    @extend_schema(
        tags=TAGS,
        summary="Send a command to a charger",
        description="Any command of the charger's OCPP version (its catalogue: e.g. Reset, "
        "ChangeAvailability, TriggerMessage, RemoteStartTransaction / RequestStartTransaction, "
        "GetConfiguration / GetVariables, ...). Answers at once with the command (201, status `sent`); "
        "read its outcome with GET commands/{id}. 409 charger_offline when no connection holds the "
        "charger (the command is recorded as such). 400 invalid_payload names the member that breaks "
        "the OCPP schema in `fields` (e.g. `payload.type`); unknown_action for an action the charger's "
        "version does not take. 404 charge_point_not_found.",
        request=s.OperatorCommandInput,
        responses={201: s.OperatorCommandOutput, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request, identity: str) -> Response:
        charge_point = charge_point_visible(user=request.user, identity=identity)
        data = validated(s.OperatorCommandInput, request.data)
        action = data["action"]
        catalogue = catalogue_for(charge_point)
        if action not in catalogue:
            raise ValidationFailed(
                _(
                    "{action} is not a command for {identity} (it speaks {protocol}; it takes {actions})."
                ).format(
                    action=action,
                    identity=charge_point.identity,
                    protocol=charge_point.ocpp_protocol or "ocpp1.6",
                    actions=", ".join(sorted(catalogue)),
                ),
                code="unknown_action",
                fields={"action": [_("Not a command of this charger's OCPP version.")]},
            )
        try:
            base_url: str | None = public_base_url(request)
        except ValueError:
            base_url = None
        command = command_send(
            charge_point=charge_point,
            action=action,
            payload=data["payload"],
            timeout_s=data.get("timeout_s"),
            actor=request.user,
            source="api",
            base_url=base_url,
        )
        if command.status == CommandStatus.CHARGER_OFFLINE:
            raise Conflict(
                _("{identity} is offline: command {id} was not sent.").format(
                    identity=charge_point.identity, id=command.pk
                ),
                code="charger_offline",
            )
        return Response(s.OperatorCommandOutput(command).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="Commands sent to your chargers, newest first",
        parameters=[s.OperatorCommandFilter],
        responses={200: s.OperatorCommandOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class CommandListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("ocpp_gateway.view_ocppcommand",)}
    serializer_class = s.OperatorCommandOutput
    queryset = OcppCommand.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-created_at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorCommandFilter, self.request)
        queryset = OcppCommand.objects.for_actor(self.request.user).select_related(
            "charge_point", "requested_by"
        )
        if filters.get("charge_point"):
            queryset = queryset.filter(charge_point__identity=filters["charge_point"])
        if filters.get("status"):
            queryset = queryset.filter(status=filters["status"])
        return queryset


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="A command and its outcome",
        description="`status` stays pending/sent until the charger answers, errs or the deadline passes.",
        responses={200: s.OperatorCommandOutput, **error_responses(401, 403, 404)},
    )
)
class CommandDetailView(OperatorView, generics.RetrieveAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("ocpp_gateway.view_ocppcommand",)}
    serializer_class = s.OperatorCommandOutput
    queryset = OcppCommand.objects.none()  # the schema's model; get_queryset() scopes

    def get_queryset(self) -> QuerySet:
        return OcppCommand.objects.for_actor(self.request.user).select_related("charge_point", "requested_by")


# --- transactions, reservations, charging profiles ---------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="Transactions (charging sessions), newest first",
        description="Filtered by charger identity, token uid and state.",
        parameters=[s.OperatorTransactionFilter],
        responses={200: s.OperatorTransactionOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class TransactionListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("charging.view_chargingsession",)}
    serializer_class = s.OperatorTransactionOutput
    queryset = ChargingSession.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-started_at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorTransactionFilter, self.request)
        queryset = ChargingSession.objects.for_actor(self.request.user).select_related("charge_point")
        if filters.get("charge_point"):
            queryset = queryset.filter(charge_point__identity=filters["charge_point"])
        if filters.get("token"):
            queryset = queryset.filter(id_tag__iexact=filters["token"].strip())
        if filters.get("state"):
            queryset = queryset.filter(status=filters["state"])
        return queryset


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="One transaction",
        responses={200: s.OperatorTransactionOutput, **error_responses(401, 403, 404)},
    )
)
class TransactionDetailView(OperatorView, generics.RetrieveAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("charging.view_chargingsession",)}
    serializer_class = s.OperatorTransactionOutput
    queryset = ChargingSession.objects.none()  # the schema's model; get_queryset() scopes

    def get_queryset(self) -> QuerySet:
        return ChargingSession.objects.for_actor(self.request.user).select_related("charge_point")


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="Reservations, newest first",
        parameters=[s.OperatorReservationFilter],
        responses={200: s.OperatorReservationOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ReservationListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("reservations.view_reservation",)}
    serializer_class = s.OperatorReservationOutput
    queryset = Reservation.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-created_at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorReservationFilter, self.request)
        queryset = Reservation.objects.for_actor(self.request.user).select_related("charge_point")
        if filters.get("charge_point"):
            queryset = queryset.filter(charge_point__identity=filters["charge_point"])
        if filters.get("status"):
            queryset = queryset.filter(status=filters["status"].upper())
        return queryset


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="One reservation",
        responses={200: s.OperatorReservationOutput, **error_responses(401, 403, 404)},
    )
)
class ReservationDetailView(OperatorView, generics.RetrieveAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("reservations.view_reservation",)}
    serializer_class = s.OperatorReservationOutput
    queryset = Reservation.objects.none()  # the schema's model; get_queryset() scopes

    def get_queryset(self) -> QuerySet:
        return Reservation.objects.for_actor(self.request.user).select_related("charge_point")


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="Charging profiles smart charging sent, newest first",
        description="What the product keeps in force at your chargers (per EVSE and purpose) and how each "
        "charger answered.",
        parameters=[s.OperatorChargingProfileFilter],
        responses={200: s.OperatorChargingProfileOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class ChargingProfileListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("smartcharging.view_charginglimit",)
    }
    serializer_class = s.OperatorChargingProfileOutput
    queryset = ChargingLimit.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-sent_at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorChargingProfileFilter, self.request)
        queryset = ChargingLimit.objects.for_actor(self.request.user).select_related("charge_point")
        if filters.get("charge_point"):
            queryset = queryset.filter(charge_point__identity=filters["charge_point"])
        if filters.get("status"):
            queryset = queryset.filter(status=filters["status"])
        return queryset


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="One charging profile",
        responses={200: s.OperatorChargingProfileOutput, **error_responses(401, 403, 404)},
    )
)
class ChargingProfileDetailView(OperatorView, generics.RetrieveAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("smartcharging.view_charginglimit",)
    }
    serializer_class = s.OperatorChargingProfileOutput
    queryset = ChargingLimit.objects.none()  # the schema's model; get_queryset() scopes

    def get_queryset(self) -> QuerySet:
        return ChargingLimit.objects.for_actor(self.request.user).select_related("charge_point")


# --- id tokens ---------------------------------------------------------------------------------------


def _tokens(user: Any) -> QuerySet:
    return IdToken.objects.for_actor(user).select_related("organisation")


def _token_writable(*, user: Any, pk: int) -> IdToken:
    """A token `user` may change: 404 when they cannot see it, 403 token_not_yours when they see it but
    it is not their organisations' (a driver's personal card used at their chargers)."""
    token = _tokens(user).filter(pk=pk).first()
    if token is None:
        raise NotFound(_("No token {id} that you may see.").format(id=pk), code="token_not_found")
    if not IdToken.objects.writable_by(user).filter(pk=pk).exists():
        raise PermissionDenied(
            _("This token is not one of your organisations' tokens."), code="token_not_yours"
        )
    return token


def _issuing_organisation(user: Any, slug: str | None) -> Organisation:
    if not slug:
        if user.organisation_id is None:
            raise ValidationFailed(
                _("Name the issuing organisation."),
                fields={"organisation": [_("Required for an account without an organisation.")]},
            )
        return user.organisation
    organisation = Organisation.objects.filter(slug=slug).first()
    if organisation is None or not (sees_everything(user) or organisation.pk in organisation_ids_for(user)):
        raise ValidationFailed(
            _("{slug} is not one of your organisations.").format(slug=slug),
            fields={"organisation": [_("Not one of your organisations.")]},
        )
    return organisation


class TokenListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("accounts.view_idtoken",),
        "POST": ("accounts.add_idtoken",),
    }
    serializer_class = s.OperatorTokenOutput
    queryset = IdToken.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-created_at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorTokenFilter, self.request)
        queryset = _tokens(self.request.user)
        if filters.get("uid"):
            queryset = queryset.filter(uid__iexact=filters["uid"].strip())
        if filters.get("status"):
            queryset = queryset.filter(status__iexact=filters["status"])
        return queryset

    @extend_schema(
        tags=TAGS,
        summary="Id tokens (cards, app tokens) you may see, newest first",
        parameters=[s.OperatorTokenFilter],
        responses={200: s.OperatorTokenOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        summary="Register a token issued by one of your organisations",
        description="Accepted from the start; `expires_at` may lie in the past (answered Expired). 409 "
        "token_exists for a uid already registered; 400 names the field (uid, type, organisation).",
        request=s.OperatorTokenInput,
        responses={201: s.OperatorTokenOutput, **error_responses(400, 401, 403, 409)},
    )
    def post(self, request: Request) -> Response:
        data = validated(s.OperatorTokenInput, request.data)
        token = accounts_services.idtoken_create(
            uid=data["uid"],
            type=data["type"],
            organisation=_issuing_organisation(request.user, data.get("organisation")),
            expires_at=data["expires_at"],
            group_id=data["group_id"],
            label=data["label"],
            actor=request.user,
            source="api",
        )
        return Response(s.OperatorTokenOutput(token).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="One token",
        responses={200: s.OperatorTokenOutput, **error_responses(401, 403, 404)},
    )
)
class TokenDetailView(OperatorView, generics.RetrieveAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("accounts.view_idtoken",)}
    serializer_class = s.OperatorTokenOutput
    queryset = IdToken.objects.none()  # the schema's model; get_queryset() scopes

    def get_queryset(self) -> QuerySet:
        return _tokens(self.request.user)


class TokenBlockView(OperatorView, APIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"POST": ("accounts.change_idtoken",)}

    @extend_schema(
        tags=TAGS,
        summary="Block a token",
        description="Chargers are answered Blocked from now on. Blocking a blocked token changes nothing. "
        "403 token_not_yours for a token you see but your organisations did not issue.",
        request=None,
        responses={200: s.OperatorTokenOutput, **error_responses(401, 403, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        token = _token_writable(user=request.user, pk=pk)
        token = accounts_services.idtoken_block(token=token, actor=request.user, source="api")
        return Response(s.OperatorTokenOutput(_tokens(request.user).get(pk=token.pk)).data)


class TokenExpireView(OperatorView, APIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"POST": ("accounts.change_idtoken",)}

    @extend_schema(
        tags=TAGS,
        summary="Set a token's expiry",
        description="`expires_at` defaults to now; the past is allowed (the token is answered Expired at "
        "once). 403 token_not_yours for a token you see but your organisations did not issue.",
        request=s.OperatorTokenExpireInput,
        responses={200: s.OperatorTokenOutput, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        token = _token_writable(user=request.user, pk=pk)
        data = validated(s.OperatorTokenExpireInput, request.data)
        token = accounts_services.idtoken_expire(
            token=token, expires_at=data.get("expires_at") or clock.now(), actor=request.user, source="api"
        )
        return Response(s.OperatorTokenOutput(_tokens(request.user).get(pk=token.pk)).data)


# --- message log -------------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=TAGS,
        summary="The OCPP message log, newest first",
        description="Every frame in and out, filtered by charger identity, action, direction and time "
        "(`since` inclusive, `until` exclusive). Kept CPO_OCPP_MESSAGE_LOG_DAYS days.",
        parameters=[s.OperatorMessageFilter],
        responses={200: s.OperatorMessageOutput(many=True), **error_responses(400, 401, 403, 404)},
    )
)
class MessageListView(OperatorView, generics.ListAPIView):
    operator_permissions: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("ocpp_gateway.view_ocppmessage",)}
    serializer_class = s.OperatorMessageOutput
    queryset = OcppMessage.objects.none()  # the schema's model; get_queryset() scopes
    pagination_class = _paginated(("-at", "-pk"))

    def get_queryset(self) -> QuerySet:
        filters = _filters(s.OperatorMessageFilter, self.request)
        queryset = OcppMessage.objects.for_actor(self.request.user)
        if filters.get("charge_point"):
            queryset = queryset.filter(identity=filters["charge_point"])
        if filters.get("action"):
            queryset = queryset.filter(action=filters["action"])
        if filters.get("direction"):
            queryset = queryset.filter(direction=filters["direction"])
        if filters.get("since"):
            queryset = queryset.filter(at__gte=filters["since"])
        if filters.get("until"):
            queryset = queryset.filter(at__lt=filters["until"])
        return queryset
