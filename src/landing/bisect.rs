//! How a merge train finds its red bead: check the whole batch; when it is red, check the
//! first half on the tip; a green half lands and the red is in the other half (narrowed
//! without checking it whole); a red half is narrowed and the other half set aside,
//! unchecked, to go back to the queue as one batch once the red bead is found. One red bead
//! in a batch of n costs at most 1 + ⌈log2 n⌉ checks, plus one for the batch set aside. The
//! last suspect is sent back without a check of its own: the beads landed before it plus it
//! are what was checked red. (A flaky check can so send back a bead that is fine; its next
//! landing checks it again.)
//!
//! A pure state machine: the queue asks `next_check`, runs the check on a train of exactly
//! those beads on the current tip, and reports the verdict; `verdict` says what to land,
//! what to send back, and what to queue again.

/// What a verdict leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// Checked green on the current tip: land them (in order), then go on.
    pub land: Vec<T>,
    /// The red bead, found: back to its agent.
    pub reject: Option<T>,
    /// Set aside unchecked while narrowing: back to the head of the queue (in order) once
    /// the bisection is over.
    pub requeue: Vec<T>,
}

impl<T> Default for Decision<T> {
    fn default() -> Self {
        Decision { land: Vec::new(), reject: None, requeue: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State<T> {
    /// The batch as it came: check it whole.
    Whole(Vec<T>),
    /// `left ++ right` holds a red bead: check `left`; `aside` waits, unchecked.
    Narrowing {
        left: Vec<T>,
        right: Vec<T>,
        aside: Vec<T>,
    },
    Over,
}

/// One batch's way through the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bisection<T> {
    state: State<T>,
}

impl<T> Bisection<T> {
    pub fn new(batch: Vec<T>) -> Bisection<T> {
        match batch.is_empty() {
            true => Bisection { state: State::Over },
            false => Bisection { state: State::Whole(batch) },
        }
    }

    /// The beads to check next, in queue order; `None` once the batch is through.
    pub fn next_check(&self) -> Option<&[T]> {
        match &self.state {
            State::Whole(batch) => Some(batch),
            State::Narrowing { left, .. } => Some(left),
            State::Over => None,
        }
    }

    /// The verdict of the last check (`next_check`'s beads): what to do about it.
    pub fn verdict(&mut self, green: bool) -> Decision<T> {
        let state = std::mem::replace(&mut self.state, State::Over);
        let (checked, rest, aside) = match state {
            State::Over => return Decision::default(),
            State::Whole(batch) => (batch, Vec::new(), Vec::new()),
            State::Narrowing { left, right, aside } => (left, right, aside),
        };
        if green {
            let decision = Decision { land: checked, ..Decision::default() };
            // The red bead was among `checked ++ rest`, and not in `checked`.
            return self.narrow(rest, aside, decision);
        }
        let aside = rest.into_iter().chain(aside).collect();
        self.narrow(checked, aside, Decision::default())
    }

    /// `suspect` holds a red bead: find it, or (when it is the only one) send it back.
    fn narrow(
        &mut self,
        mut suspect: Vec<T>,
        aside: Vec<T>,
        mut decision: Decision<T>,
    ) -> Decision<T> {
        match suspect.len() {
            0 => decision.requeue = aside,
            1 => {
                decision.reject = suspect.pop();
                decision.requeue = aside;
            }
            n => {
                // The larger half first: each check at least halves the suspects.
                let right = suspect.split_off(n.div_ceil(2));
                self.state = State::Narrowing { left: suspect, right, aside };
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a batch of `n` beads where `red` ones fail any check that includes them, the
    /// set-aside beads queued again as the next batch: (landed, rejected, checks).
    fn run(n: usize, red: &[usize]) -> (Vec<usize>, Vec<usize>, usize) {
        let (mut landed, mut rejected, mut checks) = (Vec::new(), Vec::new(), 0);
        let mut queue: Vec<usize> = (0..n).collect();
        while !queue.is_empty() {
            let mut b = Bisection::new(std::mem::take(&mut queue));
            while let Some(beads) = b.next_check() {
                checks += 1;
                let green = !beads.iter().any(|x| red.contains(x));
                let d = b.verdict(green);
                landed.extend(d.land);
                rejected.extend(d.reject);
                queue.extend(d.requeue);
            }
        }
        (landed, rejected, checks)
    }

    #[test]
    fn a_green_batch_lands_with_one_check() {
        assert_eq!(run(16, &[]), ((0..16).collect(), vec![], 1));
        assert_eq!(run(1, &[]), (vec![0], vec![], 1));
        assert_eq!(run(0, &[]), (vec![], vec![], 0));
    }

    #[test]
    fn one_red_bead_anywhere_in_sixteen_costs_at_most_six_checks_and_the_rest_land_in_order() {
        for red in 0..16 {
            let (mut landed, rejected, checks) = run(16, &[red]);
            assert_eq!(rejected, [red]);
            assert!(checks <= 1 + 4 + 1, "red at {red}: {checks} checks");
            landed.sort_unstable();
            let green: Vec<usize> = (0..16).filter(|x| *x != red).collect();
            assert_eq!(landed, green, "red at {red}");
        }
        let (_, _, first) = run(16, &[0]);
        assert_eq!(first, 6, "the first bead red: found in 5, the other 15 land in 1");
        let (_, _, last) = run(16, &[15]);
        assert_eq!(last, 5, "the last bead red: the halves before it land as they pass");
    }

    #[test]
    fn one_red_bead_in_a_batch_of_any_size_costs_at_most_two_plus_log2_n_checks() {
        for n in 1..=20usize {
            let bound = 2 + n.next_power_of_two().trailing_zeros() as usize;
            for red in 0..n {
                let (landed, rejected, checks) = run(n, &[red]);
                assert_eq!((rejected, landed.len()), (vec![red], n - 1), "n {n}, red {red}");
                assert!(checks <= bound, "n {n}, red {red}: {checks} checks, bound {bound}");
            }
        }
    }

    #[test]
    fn every_red_bead_is_found_and_every_green_one_lands() {
        for reds in [vec![0, 15], vec![3, 4, 5], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]] {
            let (mut landed, mut rejected, _) = run(16, &reds);
            rejected.sort_unstable();
            landed.sort_unstable();
            assert_eq!(rejected, reds);
            assert_eq!(landed, (0..16).filter(|x| !reds.contains(x)).collect::<Vec<_>>());
        }
        let (landed, rejected, checks) = run(4, &[0, 1, 2, 3]);
        assert_eq!((landed.len(), rejected.len()), (0, 4));
        assert!(checks <= 4 * 3, "{checks}");
    }

    #[test]
    fn landing_order_is_queue_order_within_each_landing() {
        let mut b = Bisection::new(vec!['a', 'b', 'c', 'd']);
        assert_eq!(b.next_check(), Some(&['a', 'b', 'c', 'd'][..]));
        assert_eq!(b.verdict(false), Decision::default());
        assert_eq!(b.next_check(), Some(&['a', 'b'][..]));
        let d = b.verdict(true);
        assert_eq!(d.land, ['a', 'b']);
        assert_eq!(b.next_check(), Some(&['c'][..]));
        let d = b.verdict(false);
        assert_eq!((d.reject, d.requeue), (Some('c'), vec!['d']));
        assert_eq!(b.next_check(), None);
        assert_eq!(b.verdict(true), Decision::default(), "a verdict after the end does nothing");
    }
}
