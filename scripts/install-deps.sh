#!/bin/sh
# System packages symbld and its tests use (Debian/Ubuntu). Installs only what is missing.
#   libportaudio2      microphone capture (sounddevice)
#   pulseaudio*, libasound2-plugins   a private audio server for the mic tests, ALSA→Pulse bridge
#   espeak-ng, sox     speech synthesis and conversion for tests and the demo
#   alsa-utils         arecord, for the README's "pipe the microphone into symblctl" example
#   sip-tester         sipp, the SIP peer the telephony tests call
#   systemd            systemd-analyze for the unit tests
#   python3-venv       the project's virtual environment
#   pocketsphinx-testdata  recordings of people with their transcripts: the real-speech evaluation set
#   codec2-examples    recordings of a dozen more real voices (8 kHz): the diarization tests and bench
#   asterisk-core-sounds-{es,fr,it,ru}{-wav,}  telephone prompts read by people in Spanish, French, Italian and
#                      Russian (-wav: the audio; without: the published text of each): tests/prompts.py, the
#                      language tests and bench/bench_languages.py
#   nats-server        the NATS JetStream server the fleet tests and benchmark start (docs/fleet.md)
#   openssl            a throw-away certificate for the NATS TLS-mismatch test
#   chromium, fonts-liberation  the headless browser the summary-page tests drive (and its page fonts)
#   prometheus         promtool, which checks the daemon's /metrics exposition in tests/test_metrics.py
set -eu
PKGS="libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils espeak-ng sox libsox-fmt-all sip-tester systemd python3-venv pocketsphinx-testdata codec2-examples asterisk-core-sounds-es-wav asterisk-core-sounds-es asterisk-core-sounds-fr-wav asterisk-core-sounds-fr asterisk-core-sounds-it-wav asterisk-core-sounds-it asterisk-core-sounds-ru-wav asterisk-core-sounds-ru nats-server openssl chromium fonts-liberation prometheus"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
