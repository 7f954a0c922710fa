"""The national side of a node: what a national police system uses to talk to its own node.

- :mod:`gateway.national.client`: the local-API client (SPEC §6) the CLI, `traza demo`, `traza bench` and
  the tests share;
- :mod:`gateway.national.x3p`: an X3P scan and its sidecar read into a submission with the x3p adapter.
"""
