//! The recovery budget of one outbound path: a 401 gets one credential recovery, then one
//! adopt-only check; a session expiry (404 for a session) gets one session rebuild. The
//! two compose in either order, and anything beyond goes back to the caller.

/// A failure an outbound path saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unauthorized,
    SessionExpired,
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RecoverCredential,
    AdoptOnly,
    RebuildSession,
    GiveUp,
}

#[derive(Debug, Default)]
pub struct RecoveryBudget {
    recovered: bool,
    adopted: bool,
    rebuilt: bool,
}

impl RecoveryBudget {
    pub fn next(&mut self, failure: Failure) -> Step {
        match failure {
            Failure::Unauthorized if !self.recovered => {
                self.recovered = true;
                Step::RecoverCredential
            }
            Failure::Unauthorized if !self.adopted => {
                self.adopted = true;
                Step::AdoptOnly
            }
            Failure::SessionExpired if !self.rebuilt => {
                self.rebuilt = true;
                Step::RebuildSession
            }
            _ => Step::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a path whose attempts fail as scripted (None = success); each recovery step
    /// succeeds except adopt-only, which finds nothing newer. Returns the outcome and the
    /// steps taken.
    fn run(script: &[Option<Failure>]) -> (Result<usize, Failure>, Vec<Step>) {
        let mut budget = RecoveryBudget::default();
        let mut steps = Vec::new();
        for (attempt, outcome) in script.iter().enumerate() {
            let Some(failure) = outcome else {
                return (Ok(attempt + 1), steps);
            };
            let step = budget.next(*failure);
            steps.push(step);
            if matches!(step, Step::GiveUp | Step::AdoptOnly) {
                return (Err(*failure), steps);
            }
        }
        (Err(Failure::Unauthorized), steps)
    }

    #[test]
    fn scenario_28_session_expiry_and_401_recover_once_each() {
        use Failure::*;
        let (outcome, steps) = run(&[Some(SessionExpired), Some(Unauthorized), None]);
        assert_eq!(outcome, Ok(3));
        assert_eq!(steps, vec![Step::RebuildSession, Step::RecoverCredential]);
        let (outcome, steps) = run(&[Some(Unauthorized), Some(SessionExpired), None]);
        assert_eq!(outcome, Ok(3));
        assert_eq!(steps, vec![Step::RecoverCredential, Step::RebuildSession]);
        // A third failure of either kind goes back to the caller.
        assert_eq!(
            run(&[Some(SessionExpired), Some(Unauthorized), Some(SessionExpired)]).0,
            Err(SessionExpired)
        );
        let (outcome, steps) = run(&[Some(SessionExpired), Some(Unauthorized), Some(Unauthorized)]);
        assert_eq!(outcome, Err(Unauthorized));
        assert_eq!(
            steps.last(),
            Some(&Step::AdoptOnly),
            "the second 401 only gets an adopt-only check"
        );
    }
}
