//! Outreach: runs, communications, the queue between orchestrator and worker, and delivery.
