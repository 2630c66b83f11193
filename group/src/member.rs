//! What the driver needs of a group member's state machine, whichever protocol it speaks: the classic
//! one ([`crate::membership::Membership`]) or KIP-848's ([`crate::kip848::Kip848`]). Both take
//! responses and time in and give [`Action`]s and [`Event`]s out, so the driver and the application
//! above it are the same for both.

use std::time::Instant;

use crate::{
    membership::{Action, Event, Lane, Membership, State},
    wire::Response,
    TopicPartition,
};

/// A sans-io group member.
pub trait Member: Send + std::fmt::Debug {
    /// What to do at `now`: send a request, wait, or stop.
    fn poll(&mut self, now: Instant) -> Action;
    /// The answer to the request last sent on its lane.
    fn on_response(&mut self, now: Instant, response: Response);
    /// The main lane's request failed (connection, timeout, decoding).
    fn on_failure(&mut self, now: Instant, reason: &str);
    /// The heartbeat failed the same way.
    fn on_heartbeat_failure(&mut self, now: Instant);
    /// The broker does not speak the API of the request sent on `lane` at any version we do.
    fn on_unsupported(&mut self, now: Instant, lane: Lane, reason: &str) {
        match lane {
            Lane::Main => self.on_failure(now, reason),
            Lane::Heartbeat => self.on_heartbeat_failure(now),
        }
    }
    /// The main lane's request was dropped unanswered (shutdown).
    fn abandon(&mut self);
    /// Start leaving the group: revoke, commit, leave.
    fn leave(&mut self);
    /// The application processed `partition` up to (not including) `next_offset`.
    fn set_position(&mut self, partition: &TopicPartition, next_offset: i64);
    /// The application stopped consuming the partitions of the last [`Event::Revoke`].
    fn revoke_done(&mut self);
    /// The next event for the application.
    fn next_event(&mut self) -> Option<Event>;
    /// Coarse state.
    fn state(&self) -> State;
    /// What the application consumes.
    fn assignment(&self) -> &[TopicPartition];
    /// Our member id.
    fn member_id(&self) -> &str;
    /// Generation (classic) or member epoch (KIP-848).
    fn generation(&self) -> i32;
}

impl Member for Membership {
    fn poll(&mut self, now: Instant) -> Action {
        Membership::poll(self, now)
    }
    fn on_response(&mut self, now: Instant, response: Response) {
        Membership::on_response(self, now, response)
    }
    fn on_failure(&mut self, now: Instant, reason: &str) {
        Membership::on_failure(self, now, reason)
    }
    fn on_heartbeat_failure(&mut self, now: Instant) {
        Membership::on_heartbeat_failure(self, now)
    }
    fn abandon(&mut self) {
        Membership::abandon(self)
    }
    fn leave(&mut self) {
        Membership::leave(self)
    }
    fn set_position(&mut self, partition: &TopicPartition, next_offset: i64) {
        Membership::set_position(self, partition, next_offset)
    }
    fn revoke_done(&mut self) {
        Membership::revoke_done(self)
    }
    fn next_event(&mut self) -> Option<Event> {
        Membership::next_event(self)
    }
    fn state(&self) -> State {
        Membership::state(self)
    }
    fn assignment(&self) -> &[TopicPartition] {
        Membership::assignment(self)
    }
    fn member_id(&self) -> &str {
        Membership::member_id(self)
    }
    fn generation(&self) -> i32 {
        Membership::generation(self)
    }
}
