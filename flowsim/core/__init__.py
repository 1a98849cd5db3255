"""The core: integrate any engine's gradient flow (solver, step control, saves, events located by
root finding, checkpoints), with its options, result records, files, locks, compilation cache and
memory bounds.  Nothing here knows which model it integrates: a model enters only through the
engine contract of :mod:`flowsim.core.contract`."""
