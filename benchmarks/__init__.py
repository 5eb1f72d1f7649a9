"""Benchmarks of the OCPP gateway (`python -m benchmarks`, `make bench`).

Four phases, each in its own time box, all on loopback, all bounded (10 minutes in total):

1. floor     a bare `websockets` + `ocpp` server, closed-loop Heartbeat load from 100 raw clients;
2. stack     the product (uvicorn + Channels + gateway, one process) under the same load, same clients;
3. idle      one product process holding up to 10,000 idle chargers: RSS per connection;
4. commands  two product processes sharing Redis, 5,000 chargers heartbeating, commands sent from this
             process with `command_send` + `command_wait`: latency percentiles.

The last line printed is one JSON object with the figures. Nothing here asserts a time: it measures.
"""
