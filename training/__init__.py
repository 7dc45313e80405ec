"""The training job: load interactions, weight, split, fit, evaluate, gate and publish."""
