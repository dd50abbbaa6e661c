//! An event as a JetStream message, and back.
//!
//! - subject: `<prefix>.<workspace_id>.<event_type>` (contract:
//!   `billing.events.<workspace_id>.<event_type>`);
//! - `Nats-Msg-Id: <workspace_id>/<sequence>` (JetStream drops a second
//!   message with the same id within its duplicate window);
//! - `Billing-Position: <tx_id>:<position>`, the event's place in the log's
//!   global order, so a relay can resume from the stream itself;
//! - body: the event as `GET /v1/workspaces/{ws}/events` returns it, plus
//!   `workspace_id`. No provider key is ever in an event, so none is here.

use async_nats::HeaderMap;
use billing_engine::projection::ProjectedEvent;
use billing_engine::store::decode_payload;
use billing_engine::{Cursor, StoredEvent};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::NatsConfig;

pub const POSITION_HEADER: &str = "Billing-Position";

/// The body of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub workspace_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

pub struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn message_id(workspace: &str, sequence: u64) -> String {
    format!("{workspace}/{sequence}")
}

/// The message of a stored event.
pub fn outgoing(config: &NatsConfig, event: &StoredEvent) -> Result<Outgoing, serde_json::Error> {
    let body = EventMessage {
        workspace_id: event.workspace_id.clone(),
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        payload: event.payload.clone(),
        metadata: event.metadata.clone(),
    };
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id(&event.workspace_id, event.sequence).as_str());
    headers.insert(POSITION_HEADER, format!("{}:{}", event.tx_id, event.position).as_str());
    Ok(Outgoing {
        subject: config.subject(&event.workspace_id, &event.event_type),
        headers,
        body: Bytes::from(serde_json::to_vec(&body)?),
    })
}

/// The log position a message's header names.
pub fn position(headers: Option<&HeaderMap>) -> Option<Cursor> {
    let raw = headers?.get(POSITION_HEADER)?.as_str();
    let (tx, pos) = raw.split_once(':')?;
    Some(Cursor { tx_id: tx.parse().ok()?, position: pos.parse().ok()? })
}

/// The event a message carries, for a projector.
pub fn incoming(body: &[u8]) -> Result<ProjectedEvent, String> {
    let message: EventMessage = serde_json::from_slice(body).map_err(|e| format!("not an event message: {e}"))?;
    let event = decode_payload(&message.event_type, &message.event_version, message.payload)
        .map_err(|e| format!("event {}/{}: {e}", message.workspace_id, message.sequence))?;
    Ok(ProjectedEvent { workspace_id: message.workspace_id, sequence: message.sequence, event })
}
