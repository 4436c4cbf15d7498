//! Micro-benchmarks of the frame codec on the relay path: decoding client frames (an offer
//! with a ~2 KiB SDP, an ice-candidate), encoding a relay around the client's payload, and
//! encoding `room-joined`.
//!
//! `cargo bench -p signalgrid-bench --bench frames`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use signalgrid_actors::protocol::{decode, relay_frame, ClientEvent, Participant, RelayKind, ServerFrame};

/// A browser-like SDP offer (audio + video, one data channel), about 2 KiB.
fn sdp() -> String {
    let mut s = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n",
    );
    for (mid, kind, pt) in [(0, "audio", "111 63 9 0 8 13 110 126"), (1, "video", "96 97 98 99 100 101")] {
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:\
             2A:0D:24:AE:ED:88:30:28:E8:14:60:E1\r\na=setup:actpass\r\na=mid:{mid}\r\n\
             a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
             a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
             a=sendrecv\r\na=msid:stream track{mid}\r\na=rtcp-mux\r\n\
             a=rtpmap:{first} opus/48000/2\r\na=rtcp-fb:{first} transport-cc\r\n\
             a=fmtp:{first} minptime=10;useinbandfec=1\r\na=ssrc:3735928559 cname:4TOk42mSjXCkVIa6\r\n",
            first = pt.split(' ').next().unwrap_or("0"),
        ));
    }
    s.push_str(
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=mid:2\r\na=sctp-port:5000\r\n",
    );
    while s.len() < 2048 {
        s.push_str("a=candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0\r\n");
    }
    s
}

const PEER: &str = "7f3a9c2e41b84d0f9e6a5b3c2d1e0f99";

fn offer_frame() -> String {
    json!({"event": "offer", "data": {"offer": {"type": "offer", "sdp": sdp()}, "to": PEER}}).to_string()
}

fn candidate_payload() -> String {
    json!({
        "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx \
                      raddr 192.168.1.20 rport 46154 generation 0 ufrag EsAw network-cost 999",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "EsAw"
    })
    .to_string()
}

fn candidate_frame() -> String {
    format!(r#"{{"event":"ice-candidate","data":{{"candidate":{},"to":"{PEER}"}}}}"#, candidate_payload())
}

fn decode_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, frame) in [("offer_2k", offer_frame()), ("ice_candidate", candidate_frame())] {
        assert!(matches!(decode(&frame), Ok(ClientEvent::Relay { .. })), "{name} decodes");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(name, |b| b.iter(|| decode(black_box(&frame))));
    }
    g.finish();
}

fn encode_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let from = "0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5";
    let candidate = candidate_payload();
    let offer = json!({"type": "offer", "sdp": sdp()}).to_string();
    g.bench_function("relay_ice_candidate", |b| {
        b.iter(|| relay_frame(RelayKind::IceCandidate, black_box(&candidate), black_box(from)))
    });
    g.bench_function("relay_offer_2k", |b| {
        b.iter(|| relay_frame(RelayKind::Offer, black_box(&offer), black_box(from)))
    });
    let participants: Vec<Participant> = (0..2)
        .map(|i| Participant {
            socket_id: format!("{from}{i}"),
            user_id: format!("user-{i}"),
            user_name: format!("Participant {i}"),
            user_role: if i == 0 { "client" } else { "psychologist" }.into(),
            media_state: None,
        })
        .collect();
    g.bench_function("room_joined_2", |b| {
        b.iter(|| {
            ServerFrame::RoomJoined {
                room_id: black_box("room-5f2b9c1e7a3d4e8f"),
                participants: black_box(&participants),
                waiting: None,
            }
            .encode()
        })
    });
    g.finish();
}

criterion_group!(benches, decode_frames, encode_frames);
criterion_main!(benches);
