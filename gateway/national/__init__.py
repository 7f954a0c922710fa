"""The national side of a node: what a national police system uses to talk to its own node.

- :mod:`gateway.national.client`: the local-API client (SPEC §6) the CLI, `traza demo`, `traza bench` and
  the tests share;
- :mod:`gateway.national.x3p`: an X3P scan and its sidecar read into a submission with the x3p adapter;
- :mod:`gateway.national.submission`: a submission (national format or the standard form, one recipient
  or a fan-out) read into what the node sends, no I/O;
- :mod:`gateway.national.delivery`: delivery to the national system (inbox items, webhook, drop folder).
"""
