"""Development tools that production does not need (the charger simulator, ...).

Nothing here is a Django app, and nothing imports the product's `apps/`: the tools talk to the product
over its public interfaces (OCPP, HTTP, management commands)."""
