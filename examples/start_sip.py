"""Seed sample "Start Connection" / "Stop Connection" (Telephony via SIP), on symbld.

    SYMBL_SIP_URI=sip:8002@127.0.0.1:5070 python examples/start_sip.py

Endpoints come from SYMBLD_CONTROL / SYMBLD_EVENTS / SYMBLD_RUNTIME_DIR (default: the user
service's). SYMBL_CALL_SECONDS (default 10) is how long the call runs before ``stop``.
"""

import os
import time

import symblctl as symbl
from symblctl import stop

# A valid SIP URI to dial in
connection = symbl.Telephony.start_sip(uri=os.environ.get("SYMBL_SIP_URI", "sip:8002@sip.example.com"))
print(connection)

time.sleep(float(os.environ.get("SYMBL_CALL_SECONDS", "10")))

# Stop: returns an updated connection object which has the conversationId.
connection = stop(connection.connectionId)
print(connection)
