"""systemd: readiness and watchdog notifications, native journal logging (unit installation: symblctl.units)."""
