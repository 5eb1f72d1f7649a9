"""What tariffs tells the apps above it without importing them (docs/architecture.md, Layering).
Receivers run inside the tariffs service's transaction; wired in the higher apps' AppConfig.ready():

- `cdr_issued`, emitted by `services.cdr_issue` / `cdr_reissue` (a CDR) and `services.cdr_credit` (a
  CREDIT record), once per record as it is created: roaming pushes a roaming session's records to its
  eMSP (RoamingConfig.ready()).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cpo.hooks import Hook

if TYPE_CHECKING:
    from apps.tariffs.models import ChargeDetailRecord


class CdrIssued(Protocol):
    def __call__(self, *, cdr: ChargeDetailRecord) -> None: ...


# A charge detail record (or a credit record) was issued, in its issuing transaction.
cdr_issued: Hook[CdrIssued] = Hook("tariffs.cdr_issued")
