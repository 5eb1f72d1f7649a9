"""eMSPs' tokens on chargers' local lists: only on a list that includes roaming tokens, only whitelist
ALWAYS and ALLOWED (valid); a token that may no longer be whitelisted is taken off (a tombstone)."""

from __future__ import annotations

from apps.ocpp_gateway.localauth import FULL, local_list_payload, local_list_refresh
from apps.ocpp_gateway.models import LocalAuthListEntry, LocalAuthListMember
from apps.roaming.models import RoamingToken
from tests.factories import IdTokenFactory, LocalAuthListFactory, PartyFactory, RoamingTokenFactory


def test_whitelisted_roaming_tokens_go_on_lists_that_include_them(site):
    party = PartyFactory(organisation=site.org)
    RoamingTokenFactory(sender=party, uid="04always01", whitelist="ALWAYS", group_id="G1")
    RoamingTokenFactory(sender=party, uid="04ALLOWED1", whitelist="ALLOWED")
    RoamingTokenFactory(sender=party, uid="04OFFLINE1", whitelist="ALLOWED_OFFLINE")
    RoamingTokenFactory(sender=party, uid="04NEVER001", whitelist="NEVER")
    RoamingTokenFactory(sender=party, uid="04INVALID1", whitelist="ALWAYS", valid=False)
    RoamingTokenFactory(sender=PartyFactory(status="UNREGISTERED", organisation=site.org), uid="04GONE0001")
    RoamingTokenFactory(uid="04OTHERORG")  # another operator's party
    plain = LocalAuthListFactory(organisation=site.org)
    local_refresh = local_list_refresh(local_list=plain)
    assert not local_refresh.entries.exists()

    roaming = LocalAuthListFactory(organisation=site.org, include_roaming=True)
    IdTokenFactory(uid="04ALLOWED1", organisation=site.org)  # our own card with the same uid wins
    roaming = local_list_refresh(local_list=roaming)
    assert sorted(roaming.entries.filter(removed=False).values_list("id_tag", flat=True)) == [
        "04ALLOWED1",
        "04ALWAYS01",
    ]
    assert LocalAuthListEntry.objects.get(id_tag="04ALLOWED1").id_token_id is None  # not on the list as ours
    member = LocalAuthListMember.objects.create(local_list=roaming, charge_point=site.charge_point)
    prepared = local_list_payload(member=member, update_type=FULL)
    assert {
        "idTag": "04ALWAYS01",
        "idTagInfo": {"status": "Accepted", "parentIdTag": "G1"},
    } in prepared.payload["localAuthorizationList"]
    version = roaming.version

    RoamingToken.objects.filter(uid="04always01").update(whitelist="NEVER")
    roaming = local_list_refresh(local_list=roaming)
    assert roaming.version == version + 1
    assert LocalAuthListEntry.objects.get(local_list=roaming, id_tag="04ALWAYS01").removed
    assert local_list_refresh(local_list=roaming).version == version + 1  # nothing changed since
