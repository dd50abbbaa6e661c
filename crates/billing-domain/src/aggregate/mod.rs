//! The `Workspace` aggregate: commands in, events out.

pub mod commands;
pub mod events;
pub mod recent;
pub mod workspace;

#[cfg(test)]
mod tests;

pub use commands::{Action, Channel, Role, WorkspaceCommand, REASON_LEN_MAX};
pub use events::{event_version_of, Actor, Change, WorkspaceEvent};
pub use workspace::{
    ActiveKey, GrantRecord, ReplyRecord, Workspace, WorkspaceServices, GRANTS_REMEMBERED_MAX, REPLIES_REMEMBERED_MAX,
};
