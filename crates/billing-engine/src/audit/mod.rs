//! The audit: statements folded from the stored events ([`statement`],
//! written by [`render`]) and tamper evidence ([`verify`]: every hash
//! chain recomputed, every projection compared with a fresh fold).

pub mod render;
pub mod statement;
pub mod verify;

pub use render::{Format, Renderer};
pub use statement::{replay, statement, Range, StatementLine, StatementSummary, StatementView, WorkspaceState};
pub use verify::{verify, Problem, Report};
