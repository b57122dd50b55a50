//! One subscriber's inbox: a bounded ring of shared events with one writer
//! (the publisher, under the publish lock) and one reader (the plugin's
//! receiving thread, under its queue's lock).
//!
//! Neither side takes a lock or a read-modify-write: the writer fills
//! slots and then publishes its count with one store per commit, the reader
//! empties slots and publishes its count with one store per event, and each
//! reads the other's count only when what it last saw runs out. The inbox
//! it replaced was a locked `VecDeque`: its lock's cache line moved between
//! the cores at every commit, three quarters of the publisher's cost per
//! subscriber (perf, benchmark row 1). Crossbeam's bounded channel, tried
//! in its place, was no cheaper: it is made for many writers and readers
//! and pays a compare-and-swap a side per event.
//!
//! Its slots are allocated once, at the queue's capacity (16 bytes each).

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use eventhost_plugin_api::SharedEvent;

pub struct Ring {
    slots: Box<[UnsafeCell<MaybeUninit<SharedEvent>>]>,
    /// Events written so far: stored by the writer alone.
    pushed: CachePadded<AtomicU64>,
    /// Events read so far: stored by the reader alone.
    taken: CachePadded<AtomicU64>,
}

// SAFETY: a slot is written only by the one `Writer`, while the counts
// show it free (read, or never written), and read only by the one
// `Reader`, while they show it written and not yet read; each count is
// stored with `Release` after the slots it covers and loaded with `Acquire`
// before them.
unsafe impl Sync for Ring {}
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `capacity` events (at least 1), its writer and its reader.
    pub fn new(capacity: usize) -> (Arc<Ring>, Writer, Reader) {
        let capacity = capacity.max(1);
        let ring = Arc::new(Ring {
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            pushed: CachePadded::default(),
            taken: CachePadded::default(),
        });
        let writer = Writer {
            ring: ring.clone(),
            pushed: 0,
            published: 0,
            taken_seen: 0,
            next: 0,
        };
        let reader = Reader {
            ring: ring.clone(),
            taken: 0,
            pushed_seen: 0,
            next: 0,
        };
        (ring, writer, reader)
    }

    /// Events written so far.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Acquire)
    }

    /// Events waiting to be read.
    pub fn queued(&self) -> u64 {
        let pushed = self.pushed();
        pushed.saturating_sub(self.taken.load(Ordering::Acquire))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let (mut taken, pushed) = (*self.taken.get_mut(), *self.pushed.get_mut());
        let capacity = self.slots.len() as u64;
        while taken < pushed {
            let slot = self.slots[(taken % capacity) as usize].get_mut();
            // SAFETY: written and not read (the counts), and nobody else
            // holds the ring any more.
            unsafe { slot.assume_init_drop() };
            taken += 1;
        }
    }
}

/// The ring's one writer.
pub struct Writer {
    ring: Arc<Ring>,
    /// Events pushed so far.
    pushed: u64,
    /// Events published so far: `Ring::pushed`, which only this writer stores.
    published: u64,
    /// What the reader had taken when the writer last looked. The reader
    /// only ever takes more, so room reckoned from it is never more than
    /// there is; the writer looks again only when that room runs out,
    /// rather than reading the reader's cache line, which the reader
    /// writes for every event, at every commit.
    taken_seen: u64,
    /// The slot the next event goes in.
    next: usize,
}

impl Writer {
    /// Puts `event` in the ring unless it is full; the reader sees it (and
    /// the others written before) after [`Writer::publish`].
    pub fn push(&mut self, event: &SharedEvent) -> bool {
        let capacity = self.ring.slots.len() as u64;
        if self.pushed - self.taken_seen == capacity {
            self.taken_seen = self.ring.taken.load(Ordering::Acquire);
            if self.pushed - self.taken_seen == capacity {
                return false;
            }
        }
        // SAFETY: the slot is free: the reader took it (`taken_seen`,
        // loaded with `Acquire`) or it was never written.
        unsafe { (*self.ring.slots[self.next].get()).write(event.clone()) };
        self.next = if self.next + 1 == self.ring.slots.len() {
            0
        } else {
            self.next + 1
        };
        self.pushed += 1;
        true
    }

    /// Makes what was pushed visible to the reader; returns whether there
    /// was anything new.
    pub fn publish(&mut self) -> bool {
        if self.published == self.pushed {
            return false;
        }
        self.ring.pushed.store(self.pushed, Ordering::Release);
        self.published = self.pushed;
        true
    }
}

impl Drop for Writer {
    /// What was pushed is dropped with the ring, not leaked.
    fn drop(&mut self) {
        self.publish();
    }
}

/// The ring's one reader.
pub struct Reader {
    ring: Arc<Ring>,
    /// `Ring::taken`, which only this reader stores.
    taken: u64,
    /// What the writer had published when the reader last looked.
    pushed_seen: u64,
    /// The slot the next event is read from.
    next: usize,
}

impl Reader {
    /// The next event, if the writer published one the reader has not taken.
    pub fn pop(&mut self) -> Option<SharedEvent> {
        if !self.has_events() {
            return None;
        }
        // SAFETY: the writer published this slot (`pushed_seen`, loaded
        // with `Acquire`) and this reader has not read it; it is the
        // writer's again only after the `taken` store below.
        let event = unsafe { (*self.ring.slots[self.next].get()).assume_init_read() };
        self.next = if self.next + 1 == self.ring.slots.len() {
            0
        } else {
            self.next + 1
        };
        self.taken += 1;
        self.ring.taken.store(self.taken, Ordering::Release);
        Some(event)
    }

    /// Whether the writer published an event the reader has not taken; it
    /// reads the writer's count only once the count it saw is used up.
    pub fn has_events(&mut self) -> bool {
        if self.taken == self.pushed_seen {
            self.pushed_seen = self.ring.pushed();
        }
        self.taken != self.pushed_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RArc;
    use eventhost_plugin_api::{BLOCK_VALID, Event};

    fn event(seq: u64) -> SharedEvent {
        RArc::new(Event {
            event_type: BLOCK_VALID,
            seq,
            height: seq,
            block_hash: "h".into(),
            timestamp_ms: 0,
            transactions: Default::default(),
            rejections: Default::default(),
        })
    }

    #[test]
    fn holds_up_to_its_capacity_in_order_and_wraps_around() {
        let (ring, mut writer, mut reader) = Ring::new(3);
        let mut read = Vec::new();
        let mut seq = 0;
        for _ in 0..5 {
            while writer.push(&event(seq + 1)) {
                seq += 1;
            }
            assert_eq!(ring.queued(), 0, "visible before publish");
            writer.publish();
            assert_eq!(ring.queued(), 3);
            read.extend(std::iter::from_fn(|| reader.pop()).map(|e| e.seq));
        }
        assert_eq!(read, (1..=15).collect::<Vec<_>>());
        assert_eq!(ring.queued(), 0);
        assert!(!writer.publish(), "nothing new");
    }

    #[test]
    fn events_left_in_it_are_dropped_with_it() {
        let shared = event(1);
        let (_, mut writer, reader) = Ring::new(4);
        assert!(writer.push(&shared) && writer.push(&shared));
        writer.publish();
        assert!(writer.push(&shared), "pushed, not published");
        assert_eq!(RArc::strong_count(&shared), 4);
        drop((writer, reader));
        assert_eq!(RArc::strong_count(&shared), 1);
    }

    #[test]
    fn one_writer_and_one_reader_on_two_threads_lose_nothing() {
        const EVENTS: u64 = 20_000;
        let (_, mut writer, mut reader) = Ring::new(7);
        let reading = std::thread::spawn(move || {
            let mut expected = 1;
            while expected <= EVENTS {
                match reader.pop() {
                    Some(e) => {
                        assert_eq!(e.seq, expected);
                        expected += 1;
                    }
                    // Spinning instead took a scheduler slice per
                    // handover on a busy machine.
                    None => std::thread::yield_now(),
                }
            }
        });
        let mut seq = 1;
        while seq <= EVENTS {
            if writer.push(&event(seq)) {
                seq += 1;
            } else {
                std::thread::yield_now();
            }
            writer.publish();
        }
        reading.join().unwrap();
    }
}
