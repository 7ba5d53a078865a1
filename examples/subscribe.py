"""Seed sample "Usage of Subscribe Event", on a streaming connection fed from a WAV file.

    python examples/subscribe.py speech.wav          # 16-bit mono WAV (any sample rate)

Endpoints come from SYMBLD_CONTROL / SYMBLD_EVENTS / SYMBLD_RUNTIME_DIR.
"""

import sys
import wave

import symblctl as symbl

with wave.open(sys.argv[1] if len(sys.argv) > 1 else "speech.wav", "rb") as wav:
    if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
        sys.exit("need a 16-bit mono WAV")
    rate, audio = wav.getframerate(), wav.readframes(wav.getnframes())

connection = symbl.Streaming.start_connection(config={"speechRecognition": {"sampleRateHertz": rate}})

connection.subscribe({
    'transcript_response': lambda response: print('printing the first response ' + str(response)),
    'insight_response': lambda response: print('printing the first response ' + str(response))
    }
    )
print(connection)

connection.send_audio(audio)
connection.stop()  # flushes every final result; the callbacks receive them before the program exits
