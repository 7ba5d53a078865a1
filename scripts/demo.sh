#!/bin/sh
# The main job on a fresh machine: start symbld and run one live session on the offline engine.
# With a working microphone it listens to you (Ctrl-C stops); otherwise it speaks a short
# generated meeting into a real-time file session so you see live transcript and insights.
set -eu
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=$(mktemp -d /tmp/symbld-demo.XXXXXX)
export SYMBLD_RUNTIME_DIR="$RUN/run" SYMBLD_STATE_DIR="$RUN/state"
"$BIN/symbld" --log-format console --log-level warning &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null; rm -rf "$RUN"' EXIT INT TERM
i=0; until "$BIN/symblctl" ping >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || { echo "symbld did not start"; exit 1; }; sleep 0.2; done
"$BIN/symblctl" ping
if [ "${DEMO_SOURCE:-auto}" != "file" ] && "$BIN/symblctl" describe --json 2>/dev/null | grep -q '"mic": {"available": true'; then
  echo "Listening on the default microphone: speak; Ctrl-C stops."
  "$BIN/symblctl" start --mic --title "symbld demo"
else
  echo "(no microphone available: playing a generated meeting instead)"
  : > "$RUN/meeting.txt"
  for s in "Good morning everyone, thanks for joining." \
           "Can you send me the quarterly report by Friday?" \
           "I will follow up with the design team tomorrow." \
           "Let's schedule a call next week to discuss the budget."; do
    espeak-ng -v en-us -s 160 -w "$RUN/s.wav" "$s"
    sox "$RUN/s.wav" -r 16000 -c 1 "$RUN/p.wav" pad 0 0.8
    if [ -f "$RUN/meeting.wav" ]; then sox "$RUN/meeting.wav" "$RUN/p.wav" "$RUN/m2.wav"; mv "$RUN/m2.wav" "$RUN/meeting.wav"; else mv "$RUN/p.wav" "$RUN/meeting.wav"; fi
  done
  "$BIN/symblctl" start --file "$RUN/meeting.wav" --follow --title "symbld demo" \
    --tracker "budget=budget,costs" --speaker Alex
fi
