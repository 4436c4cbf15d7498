// signalgrid-stats.js: call quality from WebRTC statistics. Samples getStats over the peer
// connections (round-trip time, loss since the previous sample, bitrates, frames decoded)
// and turns a sample into a good / fair / poor verdict. Part of the client library;
// signalgrid-client.js re-exports it.

/**
 * Samples getStats over every peer connection of `peers` (a Map of {pc}); `prev` is the
 * `next` of the previous call (null at first). Returns the sample and the `next` to pass on.
 */
export async function samplePeers(peers, prev) {
  const now = performance.now();
  let rtt = null;
  let lost = 0;
  let received = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let framesDecoded = 0;
  for (const p of peers.values()) {
    const report = await p.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime != null) {
        rtt = Math.max(rtt || 0, s.currentRoundTripTime * 1000);
      } else if (s.type === 'inbound-rtp') {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        bytesIn += s.bytesReceived || 0;
        if (s.kind === 'video') framesDecoded += s.framesDecoded || 0;
      } else if (s.type === 'outbound-rtp') {
        bytesOut += s.bytesSent || 0;
      } else if (s.type === 'remote-inbound-rtp' && rtt == null && s.roundTripTime != null) {
        rtt = s.roundTripTime * 1000;
      }
    });
  }
  const dt = prev ? (now - prev.t) / 1000 : 0;
  let loss = null;
  let bitrateIn = null;
  let bitrateOut = null;
  if (prev && dt > 0) {
    const dLost = Math.max(0, lost - prev.lost);
    const dRecv = Math.max(0, received - prev.received);
    loss = dLost + dRecv > 0 ? dLost / (dLost + dRecv) : 0;
    bitrateIn = Math.max(0, ((bytesIn - prev.bytesIn) * 8) / dt);
    bitrateOut = Math.max(0, ((bytesOut - prev.bytesOut) * 8) / dt);
  }
  const sample = { rtt, loss, bitrateIn, bitrateOut, framesDecoded, peers: peers.size };
  sample.quality = classifyQuality(sample);
  return { sample, next: { t: now, lost, received, bytesIn, bytesOut } };
}

/**
 * good/fair/poor from round-trip time, loss and bitrate; null until there is a sample
 * with a peer. Thresholds follow common VoIP guidance (ITU-T G.114 for delay).
 */
export function classifyQuality({ rtt, loss, bitrateIn, peers }) {
  if (!peers || (rtt == null && loss == null)) return null;
  const r = rtt == null ? 0 : rtt;
  const l = loss == null ? 0 : loss;
  if (r > 400 || l > 0.08) return 'poor';
  if (r > 150 || l > 0.02 || (bitrateIn != null && bitrateIn < 30000)) return 'fair';
  return 'good';
}
