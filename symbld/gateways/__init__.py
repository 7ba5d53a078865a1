"""Gateways: other protocols spoken to and from symbld, each a client of the control protocol."""
