"""What billing tells the apps above it without importing them (docs/architecture.md, Layering).
Receivers run in the caller's transaction (or in autocommit, where the caller has none); wired in the
higher apps' AppConfig.ready():

- `payment_capture_failed`: capturing a held payment failed (Stripe refused it, or the record is in
  another currency) and the payment became a debt (`payments.payment_capture`). The console raises a
  failed-capture alert (ConsoleConfig.ready()).
"""

from __future__ import annotations

from typing import Protocol

from cpo.hooks import Hook


class PaymentCaptureFailed(Protocol):
    def __call__(self, *, payment_id: int, organisation_id: int, reason: str) -> None: ...


payment_capture_failed: Hook[PaymentCaptureFailed] = Hook("billing.payment_capture_failed")
