#!/bin/sh
# The main job on a fresh machine: start symbld and run one live session on the offline engine.
# With a working microphone it listens to you (Ctrl-C stops); otherwise it speaks a short
# generated meeting into a real-time file session so you see live transcript and insights.
set -eu
cd "$(dirname "$0")/.."
BIN=${SYMBLD_BIN:-.venv/bin}  # SYMBLD_BIN: another environment's bin directory
RUN=$(mktemp -d /tmp/symbld-demo.XXXXXX)
export SYMBLD_RUNTIME_DIR="$RUN/run" SYMBLD_STATE_DIR="$RUN/state"
"$BIN/python" -m symbld --log-format console --log-level warning &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null; rm -rf "$RUN"' EXIT INT TERM
i=0; until "$BIN/python" -m symblctl ping >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || { echo "symbld did not start"; exit 1; }; sleep 0.2; done
"$BIN/python" -m symblctl ping
# Which microphone the daemon would use, or why there is none (describe -> audioSources.mic).
MIC_REASON="DEMO_SOURCE=file"
MIC_NAME=""
if [ "${DEMO_SOURCE:-auto}" != "file" ]; then
  MIC_REASON=$("$BIN/python" -m symblctl --json describe | "$BIN/python" -c '
import json, sys
mic = json.load(sys.stdin)["audioSources"]["mic"]
print("" if mic["available"] else mic.get("reason") or "unavailable")')
  if [ -z "$MIC_REASON" ]; then
    MIC_NAME=$("$BIN/python" -m symblctl --json devices | "$BIN/python" -c '
import json, sys
devs = json.load(sys.stdin)["devices"]
pick = next((d for d in devs if d.get("default")), devs[0] if devs else None)
print("%s (device %s)" % (pick["name"], pick["index"]) if pick else "the default input")')
  fi
fi
if [ -z "$MIC_REASON" ]; then
  echo "Listening on microphone: $MIC_NAME. Speak; Ctrl-C stops."
  "$BIN/python" -m symblctl start --mic --title "symbld demo"
else
  echo "(no microphone: $MIC_REASON)"
  echo "Playing a generated meeting instead."
  : > "$RUN/meeting.txt"
  for s in "Good morning everyone, thanks for joining." \
           "Can you send me the quarterly report before Friday?" \
           "I will follow up with the design team tomorrow." \
           "Let's schedule a call next week to discuss the budget."; do
    espeak-ng -v en-us -s 160 -w "$RUN/s.wav" "$s"
    sox "$RUN/s.wav" -r 16000 -c 1 "$RUN/p.wav" pad 0 0.8
    if [ -f "$RUN/meeting.wav" ]; then sox "$RUN/meeting.wav" "$RUN/p.wav" "$RUN/m2.wav"; mv "$RUN/m2.wav" "$RUN/meeting.wav"; else mv "$RUN/p.wav" "$RUN/meeting.wav"; fi
  done
  "$BIN/python" -m symblctl start --file "$RUN/meeting.wav" --follow --title "symbld demo" \
    --tracker "budget=budget,costs" --speaker Alex
fi
