//! Which idle agent gets which ready bead: a pure function, tested without I/O.

use std::collections::HashMap;

use uuid::Uuid;

/// A ready bead, in dispatch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub project: String,
    pub persona: Option<String>,
    pub labels: Vec<String>,
}

/// An idle agent and what its persona is good at; longest idle first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleAgent {
    pub id: Uuid,
    pub project: Option<String>,
    pub persona: String,
    pub labels: Vec<String>,
}

impl IdleAgent {
    fn can_take(&self, bead: &Candidate) -> bool {
        let project_ok = self.project.as_ref().is_none_or(|p| *p == bead.project);
        let persona_ok = bead.persona.as_ref().is_none_or(|p| *p == self.persona);
        project_ok && persona_ok
    }

    /// Higher is better: for a bead that names no persona, an agent whose persona no other
    /// bead of the round asks for (keep specialists free for work only they can take); then
    /// shared labels; then an agent bound to the bead's project over an unbound one (keep
    /// generalists free for the same reason).
    fn fit(&self, bead: &Candidate, wanted: &HashMap<&str, usize>) -> (bool, usize, bool) {
        let spare = bead.persona.is_some() || !wanted.contains_key(self.persona.as_str());
        let shared = bead.labels.iter().filter(|l| self.labels.contains(l)).count();
        (spare, shared, self.project.is_some())
    }
}

/// Pairs beads (in dispatch order: priority, then age) with the best-fitting free agent.
/// A bead no idle agent can take is skipped, so it never holds up the beads behind it.
pub fn assign(beads: &[Candidate], agents: &[IdleAgent]) -> Vec<(String, Uuid)> {
    let mut free: Vec<&IdleAgent> = agents.iter().collect();
    // Personas that beads still to be paired ask for, and how many.
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for p in beads.iter().filter_map(|b| b.persona.as_deref()) {
        *wanted.entry(p).or_default() += 1;
    }
    let mut pairs = Vec::new();
    for bead in beads {
        if free.is_empty() {
            break;
        }
        if let Some(p) = bead.persona.as_deref()
            && let Some(n) = wanted.get_mut(p)
        {
            *n -= 1;
            if *n == 0 {
                wanted.remove(p);
            }
        }
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, a)| a.can_take(bead))
            // max_by_key keeps the last of equals; reverse the index so the longest-idle wins
            .max_by_key(|(i, a)| (a.fit(bead, &wanted), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        if let Some(i) = best {
            pairs.push((bead.id.clone(), free.remove(i).id));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bead(id: &str, project: &str, persona: Option<&str>, labels: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            project: project.into(),
            persona: persona.map(Into::into),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn agent(n: u128, project: Option<&str>, persona: &str, labels: &[&str]) -> IdleAgent {
        IdleAgent {
            id: Uuid::from_u128(n),
            project: project.map(Into::into),
            persona: persona.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn a_required_persona_is_respected_and_does_not_block_the_queue() {
        let beads =
            [bead("b1", "web", Some("security-reviewer"), &[]), bead("b2", "web", None, &[])];
        let agents = [agent(1, None, "software-engineer", &[])];
        assert_eq!(assign(&beads, &agents), [("b2".to_string(), Uuid::from_u128(1))]);
    }

    #[test]
    fn agents_only_take_their_own_project_unless_unbound() {
        let beads = [bead("b1", "api", None, &[]), bead("b2", "web", None, &[])];
        let agents = [agent(1, Some("web"), "se", &[]), agent(2, None, "se", &[])];
        let pairs = assign(&beads, &agents);
        assert_eq!(
            pairs,
            [("b1".to_string(), Uuid::from_u128(2)), ("b2".to_string(), Uuid::from_u128(1))]
        );
    }

    #[test]
    fn the_agent_whose_labels_fit_best_wins_then_the_longest_idle() {
        let beads = [bead("b1", "web", None, &["docs", "readme"])];
        let agents = [
            agent(1, None, "se", &["backend"]),
            agent(2, None, "tw", &["docs", "readme"]),
            agent(3, None, "tw2", &["docs", "readme"]),
        ];
        assert_eq!(assign(&beads, &agents)[0].1, Uuid::from_u128(2));
        let plain = [bead("b2", "web", None, &[])];
        assert_eq!(assign(&plain, &agents)[0].1, Uuid::from_u128(1));
    }

    #[test]
    fn each_agent_gets_at_most_one_bead_per_round() {
        let beads = [bead("b1", "web", None, &[]), bead("b2", "web", None, &[])];
        let agents = [agent(1, None, "se", &[])];
        assert_eq!(assign(&beads, &agents).len(), 1);
    }

    #[test]
    fn a_specialist_is_kept_for_the_bead_that_asks_for_it_when_anyone_can_take_the_other() {
        let beads = [bead("plain", "web", None, &[]), bead("review", "web", Some("cr"), &[])];
        // The reviewer is bound to the project and would otherwise be preferred for `plain`.
        let agents = [agent(1, None, "se", &[]), agent(2, Some("web"), "cr", &[])];
        assert_eq!(
            assign(&beads, &agents),
            [("plain".to_string(), Uuid::from_u128(1)), ("review".to_string(), Uuid::from_u128(2))]
        );
        // With no bead asking for it, the reviewer takes plain work like anyone.
        let alone = [agent(2, Some("web"), "cr", &[])];
        assert_eq!(assign(&beads[..1], &alone), [("plain".to_string(), Uuid::from_u128(2))]);
    }
}
