"""The control layer: the request envelope, the command registry, the ROUTER and PUB sockets, CURVE."""
