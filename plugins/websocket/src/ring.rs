//! A stream's ring of batches: what its clients have yet to take, and no
//! room besides.
//!
//! Items are numbered from 0 as they are pushed; each reader keeps the
//! number of the next one it takes. The hub lets go of the items every
//! reader has taken after each publish ([`Ring::release_while`]), and
//! bounds the rest: a client that falls too far behind is dropped from it
//! (see [`crate::hub`]). tokio's broadcast channel, which this replaces,
//! kept a slot for every batch a client could fall behind by
//! (`client_queue_capacity`, rounded up to a power of two: 16,384 slots,
//! 512 KiB, from a stream's first client on, however little was
//! published; row 4c of docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Ring<T> {
    state: RwLock<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// The number of `items[0]`.
    first: u64,
    /// No more items will be pushed.
    closed: bool,
}

/// Why a reader gets no item at its number.
#[derive(Debug, PartialEq, Eq)]
pub enum Gap {
    /// The ring is closed and the reader took everything pushed.
    Closed,
    /// The item was let go before the reader took it.
    Released,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring {
            state: RwLock::new(State {
                items: VecDeque::new(),
                first: 0,
                closed: false,
            }),
        }
    }
}

impl<T: Clone> Ring<T> {
    fn read(&self) -> RwLockReadGuard<'_, State<T>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<T>> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number the next item pushed gets: where a new reader starts.
    pub fn end(&self) -> u64 {
        let state = self.read();
        state.first + state.items.len() as u64
    }

    pub fn push(&self, item: T) {
        self.write().items.push_back(item);
    }

    /// Item `number`, or `None` if it is not pushed yet.
    pub fn get(&self, number: u64) -> Result<Option<T>, Gap> {
        let state = self.read();
        let Some(index) = number.checked_sub(state.first) else {
            return Err(Gap::Released);
        };
        match state.items.get(index as usize) {
            Some(item) => Ok(Some(item.clone())),
            None if state.closed => Err(Gap::Closed),
            None => Ok(None),
        }
    }

    /// Lets go of the oldest items while `taken` says every reader has
    /// them.
    pub fn release_while(&self, taken: impl Fn(&T) -> bool) {
        let mut state = self.write();
        while state.items.front().is_some_and(&taken) {
            state.items.pop_front();
            state.first += 1;
        }
    }

    /// Pushes no more: readers take what is left, then get [`Gap::Closed`].
    pub fn close(&self) {
        self.write().closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_take_by_number_until_released_or_closed() {
        let ring = Ring::default();
        assert_eq!(ring.end(), 0);
        assert_eq!(ring.get(0), Ok(None));
        for n in 10..15 {
            ring.push(n);
        }
        assert_eq!(ring.end(), 5);
        assert_eq!(ring.get(0), Ok(Some(10)));
        assert_eq!(ring.get(4), Ok(Some(14)));
        assert_eq!(ring.get(5), Ok(None));
        ring.release_while(|&n| n < 12);
        assert_eq!(ring.get(1), Err(Gap::Released));
        assert_eq!(ring.get(2), Ok(Some(12)));
        assert_eq!(ring.end(), 5);
        ring.close();
        assert_eq!(ring.get(4), Ok(Some(14)));
        assert_eq!(ring.get(5), Err(Gap::Closed));
    }
}
