// The JS SDK's telephony: startEndpoint (SIP, pushSpeakerEvents) → a started_speaking speaker event
// on the resultWebSocketUrl (connection.pushEvent) → subscribeToConnection → stopEndpoint.
// Usage: node telephony.js <baseUrl> <appId> <appSecret> <sipUri>
// Prints one JSON line per frame received, then {"stopped": <stopEndpoint's answer>}.
const { sdk, SpeakerEvent } = require("@symblai/symbl-js");

const [base, appId, appSecret, uri] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function main() {
  sdk.oauth2.setBasePath(base); // the token host: see docs/symbl-compat.md
  await sdk.init({ appId, appSecret, basePath: base });
  const connection = await sdk.startEndpoint({
    endpoint: { type: "sip", uri, audioConfig: { encoding: "PCMU", sampleRate: 8000 } },
    data: { session: { name: "JS call" } },
    pushSpeakerEvents: true,
  });
  out({ started: { connectionId: connection.connectionId, conversationId: connection.conversationId } });
  // Who is on the line: what the far end says from now on is theirs.
  connection.pushEvent(new SpeakerEvent({
    type: SpeakerEvent.types.startedSpeaking,
    user: { userId: "caller@example.com", name: "Caller" },
  }));
  let heard = false;
  await sdk.subscribeToConnection(connection.connectionId, (data) => {
    out({ cb: "frame", data });
    if (data && data.type === "message_response") heard = true;
  });
  const deadline = Date.now() + 60000;
  while (!heard && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const stopped = await sdk.stopEndpoint({ connectionId: connection.connectionId });
  out({ stopped: { connectionId: stopped.connectionId, conversationId: stopped.conversationId } });
  process.exit(0);
}

main().catch((err) => {
  out({ error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
