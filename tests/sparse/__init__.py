"""Tests of growkit.sparse: the controller's invariants, growth of sparse models, the trainer integration."""
