//! The per-writer "in use" flag of the SPEC: a value that one thread at a
//! time may enter, where a second thread is told so at once.
//!
//! Not a `std::sync::Mutex`: its unlock is an atomic swap (it must look for
//! sleeping waiters), a locked instruction that cost about as much as the
//! lock itself on every append. Nobody sleeps on this flag (a thread that
//! must wait polls, see [`InUse::enter`]), so leaving is a plain release
//! store.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `T` behind an in-use flag.
pub(crate) struct InUse<T> {
    busy: AtomicBool,
    /// A thread panicked while inside: `T` may be half-updated.
    poisoned: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through an `Entered`, and at most one
// `Entered` exists at a time (the `busy` flag is taken with an acquiring
// swap and given back with a releasing store), so sharing an `InUse`
// between threads hands `T` from one thread to the next, never to two at
// once: what `T: Send` allows.
unsafe impl<T: Send> Sync for InUse<T> {}

/// Proof of being inside an [`InUse`]; leaving happens on drop.
pub(crate) struct Entered<'a, T> {
    cell: &'a InUse<T>,
}

impl<T> InUse<T> {
    pub(crate) fn new(value: T) -> InUse<T> {
        InUse {
            busy: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Enters unless another thread is inside (then `None`).
    #[inline]
    pub(crate) fn try_enter(&self) -> Option<Entered<'_, T>> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(Entered { cell: self })
    }

    /// Enters, waiting for a thread that is inside to leave. For rare
    /// coordinator calls: the wait spins briefly, then sleeps in short steps
    /// (the thread inside may be in an fdatasync lasting milliseconds).
    pub(crate) fn enter(&self) -> Entered<'_, T> {
        let mut attempts = 0u32;
        loop {
            if let Some(entered) = self.try_enter() {
                return entered;
            }
            attempts += 1;
            if attempts < 64 {
                std::hint::spin_loop();
            } else if attempts < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

impl<T> Entered<'_, T> {
    /// Whether a thread panicked inside earlier, leaving the value as the
    /// panic found it.
    pub(crate) fn poisoned(&self) -> bool {
        self.cell.poisoned.load(Ordering::Relaxed)
    }
}

impl<T> Deref for Entered<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this `Entered` holds the busy flag, so no other reference
        // to the value exists (see the `Sync` impl).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for Entered<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // derived from this `Entered`.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for Entered<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cell.poisoned.store(true, Ordering::Relaxed);
        }
        self.cell.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_entry_is_refused_until_the_first_leaves() {
        let cell = InUse::new(5);
        let mut first = cell.try_enter().expect("free");
        *first += 1;
        assert!(cell.try_enter().is_none());
        drop(first);
        let again = cell.try_enter().expect("free again");
        assert_eq!(*again, 6);
        assert!(!again.poisoned());
    }

    #[test]
    fn a_panic_inside_poisons_and_releases() {
        let cell = Arc::new(InUse::new(Vec::<u32>::new()));
        let inner = Arc::clone(&cell);
        let result = std::thread::spawn(move || {
            let mut entered = inner.try_enter().expect("free");
            entered.push(1);
            panic!("inside");
        })
        .join();
        assert!(result.is_err());
        let entered = cell.try_enter().expect("released by the unwinding thread");
        assert!(entered.poisoned());
        assert_eq!(*entered, vec![1]);
    }

    #[test]
    fn enter_waits_for_the_thread_inside_and_sees_its_writes() {
        let cell = Arc::new(InUse::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *cell.enter() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(*cell.enter(), 40_000);
    }
}
