"""Evaluation: pairs protocols (LFW 10-fold), ROC and TAR@FAR."""
