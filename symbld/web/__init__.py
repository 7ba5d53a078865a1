"""The summary page: each conversation's transcript and insights as a web page at ``summaryUrl``.

``links`` signs page URLs, ``view`` turns a connection's events into what the page shows, ``render``
writes it as escaped HTML (readable without JavaScript), ``server`` serves it on loopback with live
updates (server-sent events fed by the event bus; the ``summary_page`` command is in
control/commands/conversations.py; the Symbl-compatible server's ``summaryUrl`` and ``summaryInfo`` are
``symbld/gateways/symbl/summary_links.py``, a client of that command).
"""
