"""The handlers of the control commands, one module per group; the declarations are in ``symblctl.protocol``.

Importing this package registers every handler (``symbld.control.registry.handles``).
"""

from symbld.control.commands import connections, conversations, daemon, events, microphone, speakers, voices

GROUPS = (daemon, connections, events, microphone, conversations, speakers, voices)
