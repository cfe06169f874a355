"""The decision layer: embeddings in, answers out. Matching rules and thresholds (match), person
scores (scoring), ranking of gallery candidates (ranking), calibration and clustering. The
gallery, evaluation and the shells call it; none of them computes a decision themselves."""
