//! Prometheus metrics: one registry, families owned here, rendered as the text format
//! at `/metrics`. Modules record through the typed fields; nothing else registers.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pbx::PbxRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// `outcome` of a media fetch (`fetched`, `cached`, `revalidated`, `failed`) or decode
/// (`decoded`, `cached`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PbxLabels {
    pub pbx: String,
}

/// The daemon's metric families.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub pbx_connected: Family<PbxLabels, Gauge>,
    pub pbx_reconnects: Family<PbxLabels, Gauge>,
    pub ami_events_received: Family<PbxLabels, Gauge>,
    pub ami_events_dropped: Family<PbxLabels, Gauge>,
    pub ami_messages_skipped: Family<PbxLabels, Gauge>,
    pub media_fetches: Family<MediaLabels, Counter>,
    pub media_decodes: Family<MediaLabels, Counter>,
    pub streams: StreamMetrics,
}

/// The live streams' figures (`media::stream`), shared with the hub that records them.
#[derive(Clone, Debug, Default)]
pub struct StreamMetrics {
    /// `medcall_stream_frames_received_total`: audio frames read from AudioSocket.
    pub frames_received: Counter,
    /// `medcall_stream_frames_dropped_total`: frames a listener's full queue lost (one
    /// per listener per frame).
    pub frames_dropped: Counter,
    /// `medcall_stream_listeners_cut_total`: listeners cut off for staying full too long.
    pub listeners_cut: Counter,
    /// `medcall_stream_listeners`: listeners connected now.
    pub listeners: Gauge,
    /// `medcall_streams_live`: AudioSocket connections delivering a stream now.
    pub live: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("medcall");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        let pbx_connected = Family::<PbxLabels, Gauge>::default();
        registry.register(
            "pbx_connected",
            "1 while the AMI session to the PBX is logged in",
            pbx_connected.clone(),
        );
        let pbx_reconnects = Family::<PbxLabels, Gauge>::default();
        registry.register(
            "pbx_reconnects",
            "AMI reconnections since start",
            pbx_reconnects.clone(),
        );
        let ami_events_received = Family::<PbxLabels, Gauge>::default();
        registry.register(
            "ami_events_received",
            "AMI events received since start",
            ami_events_received.clone(),
        );
        let ami_events_dropped = Family::<PbxLabels, Gauge>::default();
        registry.register(
            "ami_events_dropped",
            "AMI events a slow consumer lost since start",
            ami_events_dropped.clone(),
        );
        let ami_messages_skipped = Family::<PbxLabels, Gauge>::default();
        registry.register(
            "ami_messages_skipped",
            "AMI messages skipped (over the size or line limit, or malformed) since start",
            ami_messages_skipped.clone(),
        );
        let media_fetches = Family::<MediaLabels, Counter>::default();
        registry.register(
            "media_fetches",
            "Audio file URLs asked for, by outcome (cached: reused without a request)",
            media_fetches.clone(),
        );
        let media_decodes = Family::<MediaLabels, Counter>::default();
        registry.register(
            "media_decodes",
            "Audio conversions, by outcome (cached: the converted file was already there)",
            media_decodes.clone(),
        );
        let streams = StreamMetrics::default();
        for (name, help, counter) in [
            (
                "stream_frames_received",
                "Audio frames read from AudioSocket streams",
                &streams.frames_received,
            ),
            (
                "stream_frames_dropped",
                "Stream frames dropped for a listener whose queue was full",
                &streams.frames_dropped,
            ),
            (
                "stream_listeners_cut",
                "Stream listeners cut off for staying too far behind",
                &streams.listeners_cut,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "stream_listeners",
            "Stream listeners connected",
            streams.listeners.clone(),
        );
        registry.register(
            "streams_live",
            "AudioSocket connections streaming now",
            streams.live.clone(),
        );
        Arc::new(Metrics {
            registry,
            http_requests,
            pbx_connected,
            pbx_reconnects,
            ami_events_received,
            ami_events_dropped,
            ami_messages_skipped,
            media_fetches,
            media_decodes,
            streams,
        })
    }

    /// Copies the PBX registry's counters into gauges, then renders the text format.
    pub fn render(&self, pbxs: &PbxRegistry) -> String {
        for pbx in pbxs.iter() {
            let s = pbx.status();
            let l = PbxLabels {
                pbx: pbx.name().to_string(),
            };
            self.pbx_connected
                .get_or_create(&l)
                .set(i64::from(s.is_connected()));
            self.pbx_reconnects
                .get_or_create(&l)
                .set(clamp(s.reconnects()));
            self.ami_events_received
                .get_or_create(&l)
                .set(clamp(s.events_received));
            self.ami_events_dropped
                .get_or_create(&l)
                .set(clamp(s.events_dropped));
            self.ami_messages_skipped
                .get_or_create(&l)
                .set(clamp(s.messages_skipped));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
