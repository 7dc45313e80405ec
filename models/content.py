"""Content similarity: TF-IDF over item text (title, category, tags, description).

Items nobody has touched yet still have text, so this is how new items reach users. The
vocabulary and IDF weights are kept as arrays so new items can be embedded without refitting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models.base import Interactions, SparseScores, sparse_from_arrays, sparse_to_arrays, top_k


class ContentSimilarity(SparseScores):
    """Users' profiles are the sum of the TF-IDF vectors of their items; scores are cosine-like."""

    name = "content"
    supports_similar = True

    def __init__(self, max_features: int = 50_000, min_df: int = 1, ngram_max: int = 2) -> None:
        self.max_features = max_features
        self.min_df = min_df
        self.ngram_max = ngram_max

    def _fit(self, data: Interactions) -> None:
        texts = data.item_texts
        if texts is None or len(texts) != data.n_items:
            raise ValueError("content similarity needs one text per item (Interactions.item_texts)")
        vectorizer = TfidfVectorizer(
            max_features=self.max_features,
            min_df=self.min_df,
            ngram_range=(1, self.ngram_max),
            sublinear_tf=True,
            dtype=np.float32,
        )
        if not any(text.strip() for text in texts):
            raise ValueError("content similarity needs item text; every item's text is empty")
        self.item_vectors_ = sp.csr_matrix(vectorizer.fit_transform(texts), dtype=np.float32)
        self.terms_ = np.array(vectorizer.get_feature_names_out(), dtype=str)
        self.idf_ = vectorizer.idf_.astype(np.float32)

    def embed(self, texts: Sequence[str]) -> sp.csr_matrix:
        """TF-IDF vectors for new texts with the fitted vocabulary (L2-normalized)."""
        self._check_fitted()
        vectorizer = TfidfVectorizer(
            vocabulary={term: i for i, term in enumerate(self.terms_.tolist())},
            ngram_range=(1, self.ngram_max),
            sublinear_tf=True,
            dtype=np.float32,
        )
        vectorizer.idf_ = self.idf_
        return sp.csr_matrix(vectorizer.transform(list(texts)), dtype=np.float32)

    def sparse_scores(self, users: np.ndarray, history: sp.csr_matrix) -> sp.csr_matrix:
        profiles = normalize(history @ self.item_vectors_)
        return sp.csr_matrix(profiles @ self.item_vectors_.T)

    def similar_items(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        scores = (self.item_vectors_[np.asarray(items)] @ self.item_vectors_.T).toarray().astype(np.float32)
        scores[scores <= 0] = -np.inf
        scores[np.arange(len(items)), items] = -np.inf
        return top_k(scores, n)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **sparse_to_arrays("item_vectors", self.item_vectors_),
            "terms": self.terms_,
            "idf": self.idf_,
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_vectors_ = sparse_from_arrays("item_vectors", arrays)
        self.terms_ = arrays["terms"]
        self.idf_ = arrays["idf"]
