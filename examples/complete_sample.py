"""Seed "Complete Sample Code": a SIP call with a summary email on stop, on symbld.

    SYMBL_SIP_URI=sip:8002@127.0.0.1:5070 SYMBL_EMAIL=you@example.com python examples/complete_sample.py

The program prints events until the call ends (the far end hangs up, or ``symblctl stop ID``);
then symbld emails the summary through the SMTP server in its [smtp] config.
Endpoints come from SYMBLD_CONTROL / SYMBLD_EVENTS / SYMBLD_RUNTIME_DIR.
"""

import os

import symblctl as symbl

emailId = os.environ.get("SYMBL_EMAIL", "john@example.com")  # Your registered email ID on the conference tool.

connection = symbl.Telephony.start_sip(uri=os.environ.get("SYMBL_SIP_URI", "sip:8002@sip.example.com"),
  actions = [
        {
          "invokeOn": "stop",
          "name": "sendSummaryEmail",
          "parameters": {
            "emails": [
              emailId
            ],
          },
        },
      ]
)
connection.subscribe({'transcript_response': lambda response: print('printing the first response ' + str(response)), 'insight_response': lambda response: print('printing the first response ' + str(response))})  # noqa: E501 - as in the seed
