//! Property tests for the anti-replay window, including a model-based test against a plain
//! `HashSet` reference with the window's documented semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use aura_proto::replay::{REJECT_AFTER_MESSAGES, ReplayWindow, WINDOW_SIZE};
use proptest::prelude::*;

/// Reference model: remembers every counter forever and applies the window rule explicitly.
#[derive(Debug, Default)]
struct Model {
    seen: HashSet<u64>,
    highest: Option<u64>,
}

impl Model {
    fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES || self.seen.contains(&counter) {
            return false;
        }
        match self.highest {
            None => true,
            Some(h) => counter > h || h - counter <= WINDOW_SIZE,
        }
    }

    fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        self.seen.insert(counter);
        self.highest = Some(self.highest.map_or(counter, |h| h.max(counter)));
        true
    }
}

/// How the next counter is chosen, relative to the model's current highest.
#[derive(Debug, Clone)]
enum Op {
    /// Counter `highest - back` (or `back` if nothing seen), around the window's edge.
    Behind(u64),
    /// Counter `highest + ahead`.
    Ahead(u64),
    /// Any counter at all.
    Absolute(u64),
    /// Counter `REJECT_AFTER_MESSAGES - below`, around the hard limit.
    NearLimit(u64),
}

fn op() -> impl Strategy<Value = (Op, bool)> {
    let op = prop_oneof![
        4 => (0..WINDOW_SIZE + 200).prop_map(Op::Behind),
        2 => (WINDOW_SIZE - 70..WINDOW_SIZE + 70).prop_map(Op::Behind),
        4 => (0u64..70).prop_map(Op::Ahead),
        1 => (0u64..20_000).prop_map(Op::Ahead),
        1 => any::<u64>().prop_map(Op::Ahead),
        1 => (0u64..100_000).prop_map(Op::Absolute),
        1 => (0u64..20_000).prop_map(Op::NearLimit),
    ];
    // The flag chooses `check` (true) or `update` (false).
    (op, any::<bool>())
}

fn counter_for(op: &Op, highest: Option<u64>) -> u64 {
    match (op, highest) {
        (Op::Behind(back), Some(h)) => h.saturating_sub(*back),
        (Op::Behind(back), None) => *back,
        (Op::Ahead(ahead), h) => h.unwrap_or(0).saturating_add(*ahead),
        (Op::Absolute(c), _) => *c,
        (Op::NearLimit(below), _) => REJECT_AFTER_MESSAGES.saturating_sub(*below) + 10,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The window agrees with the reference model on every `check`, `update` and `highest`.
    #[test]
    fn matches_reference_model(ops in proptest::collection::vec(op(), 1..600)) {
        let mut window = ReplayWindow::new();
        let mut model = Model::default();
        for (op, only_check) in &ops {
            let counter = counter_for(op, model.highest);
            if *only_check {
                prop_assert_eq!(window.check(counter), model.check(counter), "check({})", counter);
            } else {
                prop_assert_eq!(window.update(counter), model.update(counter), "update({})", counter);
            }
            prop_assert_eq!(window.highest(), model.highest);
        }
    }

    /// Any permutation, with duplicates, of counters spanning at most the window is accepted
    /// exactly once per distinct counter.
    #[test]
    fn permutation_with_duplicates_accepted_once(
        base in prop_oneof![Just(0u64), any::<u64>().prop_map(|b| b % (REJECT_AFTER_MESSAGES - WINDOW_SIZE))],
        order in Just((0..=WINDOW_SIZE).collect::<Vec<u64>>()).prop_shuffle(),
        duplicates in proptest::collection::vec((0..=WINDOW_SIZE, any::<prop::sample::Index>()), 0..200),
    ) {
        let mut order = order;
        for (offset, at) in duplicates {
            let position = at.index(order.len() + 1);
            order.insert(position, offset);
        }
        let mut window = ReplayWindow::new();
        let mut accepted = HashSet::new();
        for offset in order {
            let counter = base + offset;
            let expected = !accepted.contains(&counter);
            prop_assert_eq!(window.check(counter), expected);
            prop_assert_eq!(window.update(counter), expected);
            accepted.insert(counter);
        }
        prop_assert_eq!(accepted.len() as u64, WINDOW_SIZE + 1);
        prop_assert_eq!(window.highest(), Some(base + WINDOW_SIZE));
    }

    /// Counters more than `WINDOW_SIZE` behind the highest are rejected, seen or not.
    #[test]
    fn older_than_window_rejected(
        highest in WINDOW_SIZE + 1..REJECT_AFTER_MESSAGES,
        warmup in proptest::collection::vec(0u64..3 * WINDOW_SIZE, 0..50),
        behind in WINDOW_SIZE + 1..4 * WINDOW_SIZE,
    ) {
        let mut window = ReplayWindow::new();
        for back in warmup {
            window.update(highest.saturating_sub(back));
        }
        window.update(highest);
        prop_assert_eq!(window.highest(), Some(highest));
        let Some(old) = highest.checked_sub(behind) else { return Ok(()); };
        prop_assert!(!window.check(old));
        prop_assert!(!window.update(old));
        prop_assert_eq!(window.highest(), Some(highest));
    }

    /// `check` never changes the window.
    #[test]
    fn check_is_pure(seen in proptest::collection::vec(0u64..50_000, 0..100), probe in any::<u64>()) {
        let mut window = ReplayWindow::new();
        for c in seen {
            window.update(c);
        }
        let before = window.clone();
        let _ = window.check(probe);
        prop_assert_eq!(window, before);
    }
}
