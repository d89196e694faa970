//! `GET /streams/{token}`: a live stream of a conference's mix (`call.stream/start`'s
//! `streamUrl`), as chunked WAV or, with `Upgrade: websocket`, as WebSocket frames.
//!
//! The token is the credential (128 random bits, SPEC §3: files and streams are
//! addressed by unguessable tokens), so no API key is asked for. An unknown or ended
//! token is a 404 in seed 002's envelope. Handlers only read a [`StreamListener`]; the
//! hub and the AudioSocket server are `media::stream`'s.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use super::conversation::CallError;
use crate::media::stream::{Ending, FRAME_MS, SAMPLE_RATE, StreamHub, StreamListener};

impl FromRef<AppState> for StreamHub {
    fn from_ref(app: &AppState) -> StreamHub {
        app.streams.clone()
    }
}

/// `GET /streams/{token}` alone, for a process that serves streams and nothing else
/// (the fan-out benchmark, tests); the daemon mounts [`listen`] in its own router.
pub fn router(hub: StreamHub) -> Router {
    Router::new()
        .route("/streams/{token}", axum::routing::get(listen))
        .with_state(hub)
}

/// The WAV header of an open-ended stream: PCM, 16-bit, mono, 16 kHz, with the RIFF
/// and data sizes at 0xFFFFFFFF ("unknown"), as players of live WAV expect.
pub fn wav_header() -> [u8; 44] {
    let mut h = [0u8; 44];
    let channels: u16 = 1;
    let bits: u16 = 16;
    let block_align = channels * bits / 8;
    let byte_rate = SAMPLE_RATE * u32::from(block_align);
    let fields: [&[u8]; 13] = [
        b"RIFF",
        &u32::MAX.to_le_bytes(),
        b"WAVE",
        b"fmt ",
        &16u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &channels.to_le_bytes(),
        &SAMPLE_RATE.to_le_bytes(),
        &byte_rate.to_le_bytes(),
        &block_align.to_le_bytes(),
        &bits.to_le_bytes(),
        b"data",
        &u32::MAX.to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(dst) = h.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
        at += field.len();
    }
    h
}

/// The first WebSocket message: what the binary frames hold.
pub fn ws_hello() -> String {
    serde_json::json!({
        "format": "s16le",
        "rate": SAMPLE_RATE,
        "channels": 1,
        "frameMs": FRAME_MS,
    })
    .to_string()
}

/// Largest message a WebSocket listener may send (it has nothing to say; pings fit).
const WS_MAX_INCOMING: usize = 4096;
/// How long the closing handshake may take once medcall sent its close frame.
const WS_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A live stream of a conference's audio.
///
/// Plain GET: `200`, `Content-Type: audio/wav`, chunked: a 44-byte RIFF/WAVE header
/// (PCM 16-bit mono 16 000 Hz, RIFF and data sizes 0xFFFFFFFF), then raw s16le samples
/// as they arrive (20 ms per AudioSocket frame). The body ends with the chunked
/// terminator when the stream ends; a listener too slow for too long (its queue full
/// for `audiosocket.listener_cut_after_ms`) is cut off: the body ends without it.
///
/// With `Upgrade: websocket`: `101`, then a text message
/// `{"format":"s16le","rate":16000,"channels":1,"frameMs":20}`, then one binary
/// message per frame; close code 1000 when the stream ends, 1008 when cut off. What the
/// client sends is read and ignored.
#[utoipa::path(
    get, path = "/streams/{token}", tag = "streams",
    params(("token" = String, Path, description = "The stream's token from `streamUrl` (32 hex digits); a trailing `.wav` is allowed")),
    responses(
        (status = 200, description = "Chunked WAV: the 44-byte header, then s16le 16 kHz mono samples until the stream ends", content_type = "audio/wav", body = Vec<u8>),
        (status = 101, description = "With `Upgrade: websocket`: a JSON text message describing the format, then one binary message of s16le samples per 20 ms frame; close 1000 at the end"),
        (status = 400, description = "A WebSocket upgrade request that is not valid"),
        (status = 404, description = "No live stream has this token", body = CallError),
    )
)]
pub async fn listen(
    State(hub): State<StreamHub>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let token = token.strip_suffix(".wav").unwrap_or(&token);
    let Some(listener) = hub.listen(token) else {
        return (
            StatusCode::NOT_FOUND,
            Json(CallError {
                code: 404,
                message: "No live stream has this token.".into(),
            }),
        )
            .into_response();
    };
    let wants_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_websocket {
        return wav(listener);
    }
    // A send stalled this long means the client stopped reading: as long as the
    // fan-out lets a full queue last before it cuts the listener off.
    let patience = hub.settings().cut_after;
    let (mut parts, _) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade
            .max_message_size(WS_MAX_INCOMING)
            .max_frame_size(WS_MAX_INCOMING)
            .on_upgrade(move |socket| websocket(socket, listener, patience)),
        Err(rejection) => rejection.into_response(),
    }
}

/// The chunked WAV answer.
fn wav(listener: StreamListener) -> Response {
    let header = futures_util::stream::once(async { Ok(Bytes::copy_from_slice(&wav_header())) });
    let frames = futures_util::stream::unfold(Some(listener), |listener| async move {
        let mut listener = listener?;
        match listener.next().await {
            Some(frame) => Some((Ok(frame), Some(listener))),
            // An error makes hyper close the connection without the terminator, so the
            // client can tell "cut off" from "the stream ended".
            None if listener.ending() == Ending::Cut => {
                Some((Err(std::io::Error::other("stream listener cut off")), None))
            }
            None => None,
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(header, frames));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How one WebSocket send went.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The connection failed or closed.
    Failed,
    /// Not done within the patience: the client stopped reading.
    Stalled,
}

/// One WebSocket listener: the format, the frames, the close.
async fn websocket(mut socket: WebSocket, mut listener: StreamListener, patience: Duration) {
    // A send that cannot finish within `patience` drops the socket: unlike the chunked
    // body (written by hyper), this task owns the writes and can close a stuck client.
    let send = async |socket: &mut WebSocket, message: Message| match tokio::time::timeout(
        patience,
        socket.send(message),
    )
    .await
    {
        Ok(Ok(())) => Sent::Yes,
        Ok(Err(_)) => Sent::Failed,
        Err(_) => Sent::Stalled,
    };
    let ending = match send(&mut socket, Message::Text(ws_hello().into())).await {
        Sent::Yes => loop {
            tokio::select! {
                frame = listener.next() => match frame {
                    Some(frame) => match send(&mut socket, Message::Binary(frame)).await {
                        Sent::Yes => {}
                        Sent::Failed => return,
                        Sent::Stalled => return listener.abandon(),
                    },
                    None => break listener.ending(),
                },
                incoming = socket.recv() => match incoming {
                    // Pings are answered by the socket itself; anything else is ignored.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        },
        Sent::Failed => return,
        Sent::Stalled => return listener.abandon(),
    };
    let (code, reason) = match ending {
        Ending::Ended => (1000, "stream ended"),
        Ending::Cut => (1008, "listener too slow"),
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if send(&mut socket, close).await == Sent::Yes {
        // The closing handshake: wait a little for the client's close.
        let _ = tokio::time::timeout(WS_CLOSE_WAIT, async {
            while let Some(Ok(_)) = socket.recv().await {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_wav_header_is_open_ended_pcm_16_bit_mono_16_khz() {
        let h = wav_header();
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(h[i..i + 2].try_into().unwrap());
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32_at(4), 0xFFFF_FFFF);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(16), 16, "fmt chunk size");
        assert_eq!(u16_at(20), 1, "PCM");
        assert_eq!(u16_at(22), 1, "mono");
        assert_eq!(u32_at(24), 16_000);
        assert_eq!(u32_at(28), 32_000, "byte rate");
        assert_eq!(u16_at(32), 2, "block align");
        assert_eq!(u16_at(34), 16, "bits");
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32_at(40), 0xFFFF_FFFF);
    }

    #[test]
    fn the_websocket_hello_names_the_format() {
        let v: serde_json::Value = serde_json::from_str(&ws_hello()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"format": "s16le", "rate": 16000, "channels": 1, "frameMs": 20})
        );
    }
}
