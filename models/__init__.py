"""Recommender algorithms and the artifact format (built by the training issue).

This package is the bottom floor: it imports numpy, scipy, implicit and scikit-learn only,
never the service.
"""
