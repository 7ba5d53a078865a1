"""Integrations with the host: systemd (notify, journal, units) and SMTP mail."""
