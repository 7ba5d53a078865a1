// Drives the official @symblai/symbl-js SDK against symbld's Symbl server (tests/test_symbl_js.py).
// Usage: node realtime.js <baseUrl> <appId> <appSecret> <pcmFile> <sampleRate> [realtime|stream] [waitFor]
// "realtime" uses startRealtimeRequest; "stream" uses createStream() and then start().
// waitFor (default "messages:1"): after the audio, wait (up to 90 s) until the callbacks have
// brought this much, e.g. "messages:3,insightTypes:3,topics:1,trackers:1"; then {"stopping": true}.
// Prints one JSON line per callback the SDK makes, then {"done": conversationId}.
const fs = require("fs");
const { sdk } = require("@symblai/symbl-js");

const [base, appId, appSecret, pcmFile, rate, mode = "realtime", waitFor = "messages:1"] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const seen = { messages: 0, insightTypes: new Set(), topics: 0, trackers: 0 };
const count = (k) => (seen[k] instanceof Set ? seen[k].size : seen[k]);
const wanted = waitFor.split(",").map((w) => w.split(":")).map(([k, n]) => [k, Number(n)]);

async function main() {
  // The SDK's OAuth2 object keeps its own host (authBasePath, api.symbl.ai); init's basePath
  // does not move it. This is the documented redirect (docs/symbl-compat.md).
  sdk.oauth2.setBasePath(base);
  await sdk.init({ appId, appSecret, basePath: base });
  const open = mode === "stream" ? (o) => sdk.createStream(o) : (o) => sdk.startRealtimeRequest(o);
  const connection = await open({
    id: "js-" + Date.now(),
    insightTypes: ["question", "action_item", "follow_up"],
    config: { meetingTitle: "JS SDK", sampleRateHertz: Number(rate) },
    speaker: { userId: "ann@example.com", name: "Ann" },
    trackers: [{ name: "Deliverables", vocabulary: ["quarterly report", "slides"] }],
    handlers: {
      onSpeechDetected: (data) => out({ cb: "speech", data }),
      onMessageResponse: (data) => { seen.messages += data.length; out({ cb: "messages", data }); },
      onInsightResponse: (data) => { data.forEach((i) => seen.insightTypes.add(i.type)); out({ cb: "insights", data }); },
      onTopicResponse: (data) => { seen.topics += 1; out({ cb: "topics", data }); },
      onTrackerResponse: (data) => { seen.trackers += 1; out({ cb: "trackers", data }); },
    },
  });
  if (mode === "stream") {
    await connection.start();
  }
  const pcm = fs.readFileSync(pcmFile);
  const chunk = 8192;
  const seconds = chunk / 2 / Number(rate);
  for (let i = 0; i < pcm.length; i += chunk) {
    connection.sendAudio(pcm.subarray(i, i + chunk));
    await new Promise((r) => setTimeout(r, (seconds * 1000) / 4)); // 4x real time
  }
  const deadline = Date.now() + 90000;
  while (!wanted.every(([k, n]) => count(k) >= n) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  out({ stopping: true });
  const conversationId = connection.conversationId;
  await connection.stop();
  out({ done: conversationId });
  process.exit(0);
}

main().catch((err) => {
  out({ error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
