"""Telephony: a SIP user agent, RTP with G.711, and calls as audio sources."""
