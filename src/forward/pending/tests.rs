use super::*;
use crate::forward::SeededRandom;
use crate::wire::MessageView;
use std::time::Duration;

fn entry(now: Instant, id: u16) -> Pending {
    let q = crate::wire::Message {
        header: crate::wire::Header::from_parts(1, 0x0100, [0; 4]),
        questions: vec![crate::wire::Question {
            qname: crate::wire::Name::from_ascii("t.example").unwrap(),
            qtype: crate::wire::RType::A,
            qclass: crate::wire::Class::IN,
        }],
        ..Default::default()
    }
    .to_vec();
    let key = Key::of(&MessageView::parse(&q).unwrap()).unwrap();
    Pending {
        key,
        inflight: None,
        next_inflight: None,
        spelling: Spelling::default(),
        attempts: Attempts::one(attempt(now, id)),
        deadline: now,
        attempt: 0,
        tried: 1,
        waiters: Vec::new(),
        stale_at: None,
        near_misses: 0,
        network_error: false,
        evicted: false,
        guess_bits: 32,
        owner: None,
        share: None,
        serial: 0,
        udp_closed: false,
    }
}

fn attempt(now: Instant, id: u16) -> Attempt {
    Attempt {
        id,
        upstream: 0,
        via: Via::Udp { socket: 0 },
        sent_at: now,
    }
}

#[test]
fn stale_timers_do_not_pile_up_and_old_attempts_retire() {
    let now = Instant::now();
    let mut t = PendingTable::new(10);
    let mut rng = SeededRandom::new(1);
    let first = t.fresh_id(&mut rng).unwrap();
    let slot = t.insert(entry(now, first), now);
    let mut ids = vec![first];
    for n in 1..=10_000u64 {
        let new = t.fresh_id(&mut rng).unwrap();
        t.add_attempt(slot, attempt(now, new), now + Duration::from_millis(n));
        ids.push(new);
    }
    let armed = t.timers.len();
    assert!(armed <= 1024 + 4 + 1, "{armed} timers");
    // The last MAX_ATTEMPTS IDs answer for the slot; older ones were freed.
    for id in &ids[ids.len() - MAX_ATTEMPTS..] {
        assert_eq!(t.slot_of(*id), Some(slot));
    }
    let live = (0..=u16::MAX).filter(|&id| t.slot_of(id).is_some()).count();
    // Also out of order: a timer earlier than the last one armed still comes first.
    let other = t.fresh_id(&mut rng).unwrap();
    let early = t.insert(entry(now, other), now + Duration::from_micros(1));
    assert_eq!(t.next_timer(), Some(now + Duration::from_micros(1)));
    assert_eq!(t.pop_expired(now + Duration::from_secs(1)), Some(early));
    assert_eq!(live, MAX_ATTEMPTS);
    // Only the live timer fires.
    assert_eq!(t.pop_expired(now + Duration::from_secs(60)), Some(slot));
    assert_eq!(t.pop_expired(now + Duration::from_secs(60)), None);
}

#[test]
fn a_finished_querys_timer_does_not_fire_for_the_next_in_its_slot() {
    let now = Instant::now();
    let mut t = PendingTable::new(10);
    let first = t.insert(entry(now, 1), now + Duration::from_secs(1));
    t.remove(first);
    let second = t.insert(entry(now, 2), now + Duration::from_secs(3));
    assert_eq!(first, second, "the slot is reused");
    assert_eq!(t.pop_expired(now + Duration::from_secs(2)), None);
    assert_eq!(t.next_timer(), Some(now + Duration::from_secs(3)));
}

#[test]
fn every_attempts_id_is_freed_on_remove() {
    let now = Instant::now();
    let mut t = PendingTable::new(2);
    let slot = t.insert(entry(now, 7), now);
    t.add_attempt(slot, attempt(now, 8), now);
    assert!(!t.is_full());
    assert_eq!(t.slot_of(7), Some(slot));
    assert_eq!(t.slot_of(8), Some(slot));
    assert!(t.remove(slot).is_some());
    assert_eq!(t.slot_of(7), None);
    assert_eq!(t.slot_of(8), None);
    assert_eq!(t.len(), 0);
    assert!(t.remove(slot).is_none());
}

#[test]
fn discard_frees_every_attempts_id_and_the_slot() {
    let now = Instant::now();
    let mut t = PendingTable::new(1);
    let slot = t.insert(entry(now, 7), now);
    t.add_attempt(slot, attempt(now, 8), now);
    assert!(t.is_full());
    assert!(t.discard(slot));
    assert_eq!(t.slot_of(7), None);
    assert_eq!(t.slot_of(8), None);
    assert!(t.get(slot).is_none());
    assert_eq!(t.len(), 0);
    assert!(!t.discard(slot), "once only");
    assert_eq!(t.len(), 0);
    // The slot is reused, under a new ID.
    assert_eq!(t.insert(entry(now, 9), now), slot);
    assert_eq!(t.slot_of(9), Some(slot));
}

#[test]
fn a_failed_generator_gives_no_id() {
    let t = PendingTable::new(2);
    assert_eq!(t.fresh_id(&mut crate::forward::ids::BrokenRandom), None);
}

#[test]
fn shrinks_after_a_burst_and_keeps_what_is_in_use() {
    let now = Instant::now();
    let mut t = PendingTable::new(20_000);
    let mut rng = SeededRandom::new(3);
    let slots: Vec<Slot> = (0..10_000)
        .map(|_| {
            let id = t.fresh_id(&mut rng).unwrap();
            t.insert(entry(now, id), now)
        })
        .collect();
    for &s in &slots[1..] {
        t.remove(s);
    }
    assert!(t.shrink());
    assert!(!t.shrink(), "nothing more to give back");
    assert!(t.slots.capacity() < 300, "{}", t.slots.capacity());
    assert!(t.get(slots[0]).is_some(), "the one in use stays");
    // And the table still works.
    let id = t.fresh_id(&mut rng).unwrap();
    let s = t.insert(entry(now, id), now);
    assert_eq!(t.slot_of(id), Some(s));
    assert_eq!(t.len(), 2);
}

#[test]
fn a_reused_slot_keeps_nothing_of_its_last_query() {
    let now = Instant::now();
    let mut t = PendingTable::new(4);
    let slot = t.insert(entry(now, 1), now);
    let p = t.get_mut(slot).unwrap();
    p.near_misses = 3;
    p.stale_at = Some(now);
    p.evicted = true;
    p.network_error = true;
    p.udp_closed = true;
    p.inflight = Some(9);
    p.next_inflight = Some(2);
    p.owner = Some(5);
    assert!(t.discard(slot));
    assert!(t.get(slot).is_none() && t.slots().next().is_none());
    assert_eq!(t.slot_of(1), None);
    // A shorter key than the last one, over it.
    let key = Key::from_bytes(b"\x01x\x00\x00\x01\x00\x01\x04").unwrap();
    let fresh = Fresh {
        spelling: Spelling::default(),
        first: Attempt {
            via: Via::Tcp,
            ..attempt(now, 2)
        },
        deadline: now + Duration::from_secs(1),
        waiters: Vec::new(),
        guess_bits: 20,
        owner: None,
        share: Some(4),
        serial: 7,
    };
    let again = t.insert_new(&key, fresh, now);
    assert_eq!(again, slot, "the slot is reused");
    let p = t.get(again).unwrap();
    assert_eq!(p.key, key);
    assert_eq!(p.key.as_bytes(), key.as_bytes());
    assert_eq!(
        (p.near_misses, p.stale_at, p.inflight, p.next_inflight),
        (0, None, None, None)
    );
    assert!(!p.evicted && !p.network_error);
    assert!(p.udp_closed, "a TCP first attempt closes the UDP path");
    assert_eq!(
        (p.owner, p.share, p.serial, p.guess_bits),
        (None, Some(4), 7, 20)
    );
    assert_eq!((p.tried, p.attempts.iter().count()), (1, 1));
    assert_eq!(p.deadline, now + Duration::from_secs(1));
    assert_eq!(t.slot_of(2), Some(slot));
    assert_eq!(t.len(), 1);
}
