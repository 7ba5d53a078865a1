"""Seed sample "Send Audio from Mic", on symbld: the daemon captures its microphone.

    python examples/send_audio_from_mic.py           # Ctrl-C stops the connection

Endpoints come from SYMBLD_CONTROL / SYMBLD_EVENTS / SYMBLD_RUNTIME_DIR.
"""

import symblctl as symbl

connection = symbl.Streaming.start_connection()

connection.subscribe({'message_response': lambda response: print('got this response from callback', response)})

connection.send_audio_from_mic()
