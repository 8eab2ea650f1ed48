//! The fdatasync of a full segment, run on its own thread after rotation so
//! that appends to the next segment go on meanwhile.
//!
//! Its end is published through a flag set *before* the event fd is
//! signalled. `JoinHandle::is_finished` is not enough: it turns true only
//! once the thread has returned, after the signal, so a poller woken by
//! the signal could still see the sync running, drain the descriptor and
//! sleep with nothing left to wake it. A panicking sync still sets the flag
//! and signals, so nobody waits for it forever.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::io::EventFd;

pub(crate) struct SegmentSync {
    thread: JoinHandle<io::Result<()>>,
    done: Arc<AtomicBool>,
}

impl SegmentSync {
    /// Runs `sync` on a new thread and signals `event` once it is over.
    pub(crate) fn start(
        sync: impl FnOnce() -> io::Result<()> + Send + 'static,
        event: Arc<EventFd>,
    ) -> SegmentSync {
        let done = Arc::new(AtomicBool::new(false));
        let over = Over {
            done: done.clone(),
            event,
        };
        let thread = std::thread::spawn(move || {
            // Dropped after `sync` has returned or unwound.
            let _over = over;
            sync()
        });
        SegmentSync { thread, done }
    }

    /// Whether the sync is over; once true, [`join`](Self::join) returns
    /// without waiting for the disk.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits for the sync and says how it went.
    pub(crate) fn join(self) -> Result<(), String> {
        match self.thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the syncing thread panicked".to_string()),
        }
    }
}

/// Marks the sync over when dropped.
struct Over {
    done: Arc<AtomicBool>,
    event: Arc<EventFd>,
}

impl Drop for Over {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        self.event.signal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable_within(event: &EventFd, timeout_ms: i32) -> bool {
        let mut pollfd = libc::pollfd {
            fd: event.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and the count says one.
        unsafe { libc::poll(&mut pollfd, 1, timeout_ms) == 1 }
    }

    #[test]
    fn a_woken_poller_always_sees_the_sync_done() {
        let event = Arc::new(EventFd::new().unwrap());
        // The thread's return races the poller's wake-up; many rounds make
        // a check that ran ahead of the end show up.
        for round in 0..500 {
            let sync = SegmentSync::start(|| Ok(()), event.clone());
            assert!(readable_within(&event, 5_000), "round {round}: no signal");
            assert!(sync.is_done(), "round {round}: signalled before done");
            event.drain();
            assert_eq!(sync.join(), Ok(()));
        }
    }

    #[test]
    fn join_reports_a_failed_sync_and_a_panic() {
        let event = Arc::new(EventFd::new().unwrap());
        let failed = SegmentSync::start(
            || Err(io::Error::from_raw_os_error(libc::EIO)),
            event.clone(),
        );
        assert!(failed.join().unwrap_err().contains("Input/output error"));
        event.drain();
        let panicked = SegmentSync::start(|| panic!("disk on fire"), event.clone());
        assert!(readable_within(&event, 5_000), "a panic signals too");
        assert!(panicked.is_done());
        assert_eq!(panicked.join().unwrap_err(), "the syncing thread panicked");
    }
}
