//! Reading and cancelling runs: a run with each communication's outcome, the recent runs, and a
//! cancel that ends every communication not yet sent.

use super::super::model::RunView;
use super::super::store::CommunicationItem;
use crate::error::Error;
use crate::ids::{RunId, UserId};

use super::Outreach;

impl Outreach {
    /// A run with each communication's outcome; 404 for unknown or another user's run.
    pub async fn run(&self, user: &UserId, run_id: &RunId) -> Result<RunView, Error> {
        let run = self.runs.run(user, run_id).await?.ok_or(Error::NotFound)?;
        let communications = self.runs.communications(user, run_id).await?;
        Ok(run.view(Some(
            communications.iter().map(CommunicationItem::view).collect(),
        )))
    }

    /// The user's recent runs, newest first.
    pub async fn recent_runs(&self, user: &UserId, limit: u32) -> Result<Vec<RunView>, Error> {
        Ok(self
            .runs
            .recent_runs(user, limit)
            .await?
            .iter()
            .map(|run| run.view(None))
            .collect())
    }

    /// Cancels the run's communications that still wait (queued or scheduled); those being or already sent are
    /// left as they are. The worker also refuses to start any communication of a cancelled run.
    pub async fn cancel(&self, user: &UserId, run_id: &RunId) -> Result<RunView, Error> {
        if !self.runs.request_cancel(user, run_id).await? {
            return Err(Error::NotFound);
        }
        for item in self.runs.communications(user, run_id).await? {
            // Waiting ones end now: queued, and scheduled for a later day.
            if item.status.is_waiting() {
                self.runs.cancel_by_user(&item).await?;
            }
        }
        self.run(user, run_id).await
    }
}
