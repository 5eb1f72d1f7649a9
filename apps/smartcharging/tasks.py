"""Smart charging in Celery: each task takes ids, never waits on a charger, and is safe to retry."""

from celery import current_app, shared_task

from apps.smartcharging import services


@shared_task(name="smartcharging.site_rebalance", ignore_result=True)
def site_rebalance_task(site_id: int) -> list[int]:
    """Rebalance one site (queued, coalesced, by services.site_rebalance_dispatch). While its changes are
    still coming (a burst of starts), the run is put off a little (services.site_rebalance_wait)."""
    wait = services.site_rebalance_wait(site_id=site_id)
    if wait > 0:
        current_app.send_task(services.REBALANCE_TASK, args=(site_id,), countdown=wait)
        return []
    services.site_rebalance_claim(site_id=site_id)
    return services.site_rebalance(site_id=site_id).sent


@shared_task(name="smartcharging.sites_rebalance", ignore_result=True)
def sites_rebalance_task() -> int:
    """The periodic pass over every site in use (profiles refreshed before their validTo)."""
    return services.sites_rebalance()
