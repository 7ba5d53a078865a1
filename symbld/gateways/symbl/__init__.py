"""Symbl's real-time protocol, both ways.

- ``auth``: app credentials, the token client (cached, renewed before expiry) and the JWT-shaped
  tokens the compatible server issues;
- ``wire``: mapping between Symbl frames and symbld events, both directions;
- ``server``: the Symbl-compatible HTTP/WebSocket server backed by the daemon
  (``symbld --serve-symbl``).

The client engine lives in ``symbld.gateways.symbl.engine``.
"""
