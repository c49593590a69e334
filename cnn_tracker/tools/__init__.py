"""Tools over trained models: inference (evaluate, predict) and the bench."""
