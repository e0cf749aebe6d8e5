//! The in-memory order store and its change log.
//!
//! One `Store` sits behind one `std::sync::Mutex` (see [`super::Sandbox`]):
//! every write updates the orders, the indexes and the change log inside the
//! same critical section and reads the clock there too. So the change log is
//! exactly the sequence of states readers can observe: no reader can see an
//! order whose change is not yet logged, nor a change whose order is not yet
//! visible, and log order is date order. A std mutex is right because no
//! critical section awaits and each is short (a page is cloned as `Arc`s and
//! serialized after the lock is released).
//!
//! Orders are kept pre-serialized (`StoredOrder::json`) so that serving a
//! page is a memcpy per order, which is what lets one core serve tens of
//! thousands of orders per second.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::clock::{Clock, Precision, format_keap};
use super::orders::{Generator, Order};

/// An order plus its JSON, written once per change.
#[derive(Debug)]
pub struct StoredOrder {
    pub order: Order,
    pub json: Bytes,
}

impl StoredOrder {
    fn new(order: Order) -> Arc<Self> {
        // Serializing plain structs of strings and numbers cannot fail.
        let json = serde_json::to_vec(&order).unwrap_or_default();
        Arc::new(Self {
            order,
            json: Bytes::from(json),
        })
    }

    fn mod_key(&self) -> (i64, u64) {
        (
            self.order.modification_date.timestamp_millis(),
            self.order.id,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One entry of `GET /_sandbox/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: u64,
    pub change: ChangeKind,
    /// The order's new `modification_date`, byte for byte as served; for a
    /// deletion, the provider time of the deletion in the same format.
    pub modification_date: String,
}

/// Sort keys the list endpoints accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    ModificationDate,
    Id,
    CreationDate,
    OrderDate,
}

/// A date field of an order that filters can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    Creation,
    Modification,
    Order,
}

impl DateField {
    fn of(self, o: &Order) -> DateTime<Utc> {
        match self {
            DateField::Creation => o.creation_date,
            DateField::Modification => o.modification_date,
            DateField::Order => o.order_date,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    fn holds<T: Ord>(self, left: T, right: T) -> bool {
        match self {
            Cmp::Lt => left < right,
            Cmp::Le => left <= right,
            Cmp::Gt => left > right,
            Cmp::Ge => left >= right,
            Cmp::Eq => left == right,
            Cmp::Ne => left != right,
        }
    }
}

/// A condition on one order.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Date(DateField, Cmp, DateTime<Utc>),
    Id(Cmp, u64),
    Paid(bool),
    ContactId(u64),
    ProductId(u64),
}

impl Filter {
    fn matches(&self, o: &Order) -> bool {
        match self {
            Filter::Date(field, cmp, t) => cmp.holds(field.of(o), *t),
            Filter::Id(cmp, id) => cmp.holds(o.id, *id),
            Filter::Paid(paid) => o.is_paid() == *paid,
            Filter::ContactId(id) => o.contact.id == *id,
            Filter::ProductId(id) => o.order_items.iter().any(|i| i.product.id == *id),
        }
    }
}

/// What a list request asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// All must hold.
    pub filters: Vec<Filter>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

/// One page and the number of matching orders.
#[derive(Debug)]
pub struct Page {
    pub total: usize,
    pub orders: Vec<Arc<StoredOrder>>,
}

#[derive(Debug)]
pub struct Store {
    clock: Arc<Clock>,
    precision: Precision,
    generator: Generator,
    next_id: u64,
    by_id: BTreeMap<u64, Arc<StoredOrder>>,
    /// Keyed by (modification millis, id): the default sort order, and the
    /// index that makes `since`/`until` a range scan.
    by_mod: BTreeMap<(i64, u64), Arc<StoredOrder>>,
    changes: Vec<Change>,
    /// While `shared_timestamps` is on, every write uses this date, so many
    /// orders share one `modification_date` (like a bulk import).
    pinned: Option<DateTime<Utc>>,
}

impl Store {
    pub fn new(seed: u64, clock: Arc<Clock>, precision: Precision) -> Self {
        Self {
            clock,
            precision,
            generator: Generator::new(seed),
            next_id: 1,
            by_id: BTreeMap::new(),
            by_mod: BTreeMap::new(),
            changes: Vec::new(),
            pinned: None,
        }
    }

    fn write_time(&self) -> DateTime<Utc> {
        self.pinned
            .unwrap_or_else(|| self.precision.apply(self.clock.now()))
    }

    /// Pre-creates `count` orders as history before "now": oldest first, 0–3
    /// seconds apart (0 means two orders share a second), so ids and dates
    /// grow together like a real store's past. They are logged as created.
    pub fn seed_history(&mut self, count: usize) {
        let gaps_ms: Vec<i64> = (0..count)
            .map(|_| 1000 * i64::try_from(self.generator.below(4)).unwrap_or(0))
            .collect();
        let mut t = self.write_time() - TimeDelta::milliseconds(gaps_ms.iter().sum());
        for gap in gaps_ms {
            t += TimeDelta::milliseconds(gap);
            self.insert_new(t);
        }
    }

    /// Creates `count` orders now; returns their ids.
    /// Creates `count` orders now; `notes_bytes` pads each one's notes to
    /// that length.
    pub fn create(&mut self, count: usize, notes_bytes: Option<usize>) -> Vec<u64> {
        let at = self.write_time();
        (0..count)
            .map(|_| self.insert_padded(at, notes_bytes))
            .collect()
    }

    fn insert_new(&mut self, at: DateTime<Utc>) -> u64 {
        self.insert_padded(at, None)
    }

    fn insert_padded(&mut self, at: DateTime<Utc>, notes_bytes: Option<usize>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut order = self.generator.new_order(id, at);
        if let Some(n) = notes_bytes {
            order.notes = pad(&order.notes, n);
        }
        let stored = StoredOrder::new(order);
        self.changes.push(Change {
            id,
            change: ChangeKind::Created,
            modification_date: format_keap(at),
        });
        self.by_mod.insert(stored.mod_key(), Arc::clone(&stored));
        self.by_id.insert(id, stored);
        id
    }

    /// Updates one order (new fields, new modification date).
    pub fn touch(&mut self, id: u64) -> Option<Arc<StoredOrder>> {
        self.touch_dated(id, TimeDelta::zero())
    }

    /// Updates one order with a modification date `ahead` of the provider's
    /// now: one record with a wrong date, the clock of the rest unchanged
    /// (as if the clock jumped for that one write and back).
    pub fn touch_dated(&mut self, id: u64, ahead: TimeDelta) -> Option<Arc<StoredOrder>> {
        let old = self.by_id.get(&id)?.clone();
        let now = self.write_time();
        let at = now.checked_add_signed(ahead).unwrap_or(now);
        let mut order = old.order.clone();
        self.generator.update(&mut order, at);
        let stored = StoredOrder::new(order);
        self.by_mod.remove(&old.mod_key());
        self.by_mod.insert(stored.mod_key(), Arc::clone(&stored));
        self.by_id.insert(id, Arc::clone(&stored));
        self.changes.push(Change {
            id,
            change: ChangeKind::Updated,
            modification_date: format_keap(at),
        });
        Some(stored)
    }

    /// Updates a pseudo-randomly chosen existing order (the live generator).
    pub fn touch_random(&mut self) -> Option<u64> {
        let probe = 1 + self.generator.below(self.next_id.saturating_sub(1));
        let id = self
            .by_id
            .range(probe..)
            .next()
            .or_else(|| self.by_id.iter().next())
            .map(|(id, _)| *id)?;
        self.touch(id).map(|_| id)
    }

    /// Deletes one order; it disappears from every listing.
    pub fn delete(&mut self, id: u64) -> bool {
        let Some(old) = self.by_id.remove(&id) else {
            return false;
        };
        self.by_mod.remove(&old.mod_key());
        let at = self.write_time();
        self.changes.push(Change {
            id,
            change: ChangeKind::Deleted,
            modification_date: format_keap(at),
        });
        true
    }

    /// Turns the `shared_timestamps` fault on (pinning the current time) or
    /// off. Turning it on twice keeps the first pin.
    pub fn set_shared_timestamps(&mut self, on: bool) {
        self.pinned = match (on, self.pinned) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(self.precision.apply(self.clock.now())),
            (false, _) => None,
        };
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Runs a list query against the current state.
    ///
    /// Offset paging is evaluated afresh on every request, as Keap does: the
    /// result set is re-filtered and re-sorted, then `offset` records are
    /// skipped. When an order changes between two page requests, its
    /// position moves (an update sends it to the end of a date-sorted list;
    /// a delete removes it), so later records shift by one: a client paging
    /// by offset can skip a record or see one twice. That is the real
    /// provider's behaviour, reproduced on purpose.
    pub fn list(&self, q: &ListQuery) -> Page {
        let (lo, hi, rest) = mod_bounds(&q.filters);
        let matches = |o: &StoredOrder| rest.iter().all(|f| f.matches(&o.order));
        let within = |o: &StoredOrder| {
            let ms = o.order.modification_date.timestamp_millis();
            lo.is_none_or(|lo| ms >= lo) && hi.is_none_or(|hi| ms < hi)
        };
        let mut total = 0usize;
        let mut orders = Vec::new();
        let mut take = |o: &Arc<StoredOrder>| {
            if total >= q.offset && orders.len() < q.limit {
                orders.push(Arc::clone(o));
            }
            total += 1;
        };
        match q.sort {
            SortKey::ModificationDate => {
                let start = lo.map_or(Bound::Unbounded, |lo| Bound::Included((lo, 0)));
                let end = hi.map_or(Bound::Unbounded, |hi| Bound::Excluded((hi, 0)));
                if lo.zip(hi).is_some_and(|(lo, hi)| lo >= hi) {
                    return Page {
                        total: 0,
                        orders: Vec::new(),
                    };
                }
                if rest.is_empty() {
                    // The common poller query: no other filter, so the page
                    // is a slice of the index and the total its length.
                    let range = self.by_mod.range((start, end));
                    let total = if lo.is_none() && hi.is_none() {
                        self.by_mod.len()
                    } else {
                        range.clone().count()
                    };
                    let slice = |it: &mut dyn Iterator<Item = &Arc<StoredOrder>>| {
                        it.skip(q.offset).take(q.limit).cloned().collect()
                    };
                    let orders = if q.descending {
                        slice(&mut range.rev().map(|(_, o)| o))
                    } else {
                        slice(&mut range.map(|(_, o)| o))
                    };
                    return Page { total, orders };
                }
                let range = self.by_mod.range((start, end)).map(|(_, o)| o);
                if q.descending {
                    range.rev().filter(|o| matches(o)).for_each(&mut take);
                } else {
                    range.filter(|o| matches(o)).for_each(&mut take);
                }
            }
            SortKey::Id => {
                let all = self.by_id.values();
                let keep = |o: &&Arc<StoredOrder>| within(o) && matches(o);
                if q.descending {
                    all.rev().filter(keep).for_each(&mut take);
                } else {
                    all.filter(keep).for_each(&mut take);
                }
            }
            SortKey::CreationDate | SortKey::OrderDate => {
                let field = if q.sort == SortKey::CreationDate {
                    DateField::Creation
                } else {
                    DateField::Order
                };
                let mut found: Vec<&Arc<StoredOrder>> = self
                    .by_id
                    .values()
                    .filter(|o| within(o) && matches(o))
                    .collect();
                found.sort_by_key(|o| (field.of(&o.order), o.order.id));
                if q.descending {
                    found.reverse();
                }
                found.into_iter().for_each(&mut take);
            }
        }
        Page { total, orders }
    }
}

/// Splits off the modification-date conditions as a half-open millisecond
/// range `[lo, hi)` so they become an index range; returns the other filters.
fn mod_bounds(filters: &[Filter]) -> (Option<i64>, Option<i64>, Vec<Filter>) {
    let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
    let mut rest = Vec::new();
    let raise = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |b| b.max(v)));
    let lower = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |b| b.min(v)));
    for f in filters {
        match f {
            Filter::Date(DateField::Modification, cmp, t) if *cmp != Cmp::Ne => {
                // Dates are whole milliseconds at most, so ">" is ">= t+1ms".
                let ms = t.timestamp_millis();
                let ceil = if t.timestamp_subsec_nanos() % 1_000_000 == 0 {
                    ms
                } else {
                    ms + 1
                };
                match cmp {
                    Cmp::Ge => raise(&mut lo, ceil),
                    Cmp::Gt => raise(&mut lo, ms + 1),
                    Cmp::Lt => lower(&mut hi, ceil),
                    Cmp::Le => lower(&mut hi, ms + 1),
                    Cmp::Eq => {
                        raise(&mut lo, ceil);
                        lower(&mut hi, ms + 1);
                    }
                    Cmp::Ne => {}
                }
            }
            other => rest.push(other.clone()),
        }
    }
    (lo, hi, rest)
}

/// `text` repeated and cut to exactly `len` bytes (ASCII filler when empty).
fn pad(text: &str, len: usize) -> String {
    let unit = if text.is_ascii() && !text.is_empty() {
        text
    } else {
        "x"
    };
    let mut out = unit.repeat(len / unit.len() + 1);
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn store() -> (Store, Arc<Clock>) {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let clock = Arc::new(Clock::new(Some(t)));
        (Store::new(1, Arc::clone(&clock), Precision::Seconds), clock)
    }

    fn ids(p: &Page) -> Vec<u64> {
        p.orders.iter().map(|o| o.order.id).collect()
    }

    #[test]
    fn default_order_is_modification_then_id() {
        let (mut s, clock) = store();
        s.create(3, None);
        clock.set_offset_seconds(5);
        s.touch(1);
        let p = s.list(&ListQuery {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(ids(&p), vec![2, 3, 1]);
        assert_eq!(p.total, 3);
    }

    #[test]
    fn modification_range_is_half_open_and_exact_to_the_millisecond() {
        let (mut s, clock) = store();
        s.create(1, None);
        clock.set_offset_seconds(10);
        s.create(1, None);
        let t10 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 10).unwrap();
        let q = |filters| ListQuery {
            filters,
            limit: 10,
            ..Default::default()
        };
        let m = DateField::Modification;
        assert_eq!(ids(&s.list(&q(vec![Filter::Date(m, Cmp::Ge, t10)]))), [2]);
        assert_eq!(
            ids(&s.list(&q(vec![Filter::Date(m, Cmp::Gt, t10)]))),
            [0u64; 0]
        );
        assert_eq!(ids(&s.list(&q(vec![Filter::Date(m, Cmp::Lt, t10)]))), [1]);
        assert_eq!(
            ids(&s.list(&q(vec![Filter::Date(m, Cmp::Le, t10)]))),
            [1, 2]
        );
        assert_eq!(ids(&s.list(&q(vec![Filter::Date(m, Cmp::Eq, t10)]))), [2]);
        let later = t10 + TimeDelta::milliseconds(1);
        assert_eq!(
            ids(&s.list(&q(vec![Filter::Date(m, Cmp::Ge, later)]))),
            [0u64; 0]
        );
    }

    #[test]
    fn changes_follow_writes_in_order() {
        let (mut s, _) = store();
        s.create(2, None);
        s.touch(2);
        assert!(s.delete(1));
        assert!(!s.delete(1));
        let kinds: Vec<_> = s.changes().iter().map(|c| (c.id, c.change)).collect();
        assert_eq!(
            kinds,
            [
                (1, ChangeKind::Created),
                (2, ChangeKind::Created),
                (2, ChangeKind::Updated),
                (1, ChangeKind::Deleted)
            ]
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn history_is_spread_before_now_oldest_first() {
        let (mut s, clock) = store();
        s.seed_history(100);
        let p = s.list(&ListQuery {
            limit: 1000,
            ..Default::default()
        });
        assert_eq!(ids(&p), (1..=100).collect::<Vec<_>>());
        let last = &p.orders[99].order;
        assert_eq!(last.modification_date, clock.now());
        assert!(p.orders[0].order.modification_date < last.modification_date);
    }
}
