"""`shopcast worker`: runs scheduled jobs (retraining now; campaign delivery joins later)."""
